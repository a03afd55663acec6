"""Render a chat prompt from a Jinja template file in a sandbox.

A template's output is split into messages at lines that hold only a role marker (`system:`, `user:`,
`assistant:`), the layout of Prompty files. Rendering is strict: an undefined variable is an error that names the
file and line, never a silent blank.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError
from ..providers.base import Message, Role

_ROLE_LINE = re.compile(r"^\s*(system|user|assistant)\s*:\s*$", re.IGNORECASE)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, stricter in one way: reaching for an unsafe attribute (`__class__`, `__globals__`,
    a type's `mro`…) is an error at once, not an undefined value a template could pass along unnoticed."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _environment(search_path: Path) -> ImmutableSandboxedEnvironment:
    return _Sandbox(
        loader=jinja2.FileSystemLoader(str(search_path.resolve())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def parse_messages(text: str, where: str = "template") -> list[Message]:
    """Split rendered text into chat messages at role-marker lines."""
    messages: list[Message] = []
    role: Role | None = None
    lines: list[str] = []

    def flush() -> None:
        if role is not None:
            content = "\n".join(lines).strip()
            if content:
                messages.append(Message(role=role, content=content))

    for line in text.splitlines():
        match = _ROLE_LINE.match(line)
        if match:
            flush()
            role = match.group(1).lower()  # type: ignore[assignment]
            lines = []
        elif role is None:
            if line.strip():
                raise TemplateError(f"{where}: text before the first role marker (system:, user: or assistant:)")
        else:
            lines.append(line)
    flush()
    if not messages:
        raise TemplateError(f"{where}: renders no messages (expected lines 'system:', 'user:' …)")
    return messages


@dataclass
class PromptTemplate:
    """A loaded template; `render(**vars)` gives the chat messages. `line_offset` is where its body starts in
    its file (a Prompty file's front matter comes first), so errors name the file's own line numbers."""

    path: Path
    source: str
    template: jinja2.Template
    line_offset: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def render(self, **variables: Any) -> list[Message]:
        try:
            text = self.template.render(**variables)
        except jinja2.TemplateError as exc:
            where = _error_location(exc, self.path, self.line_offset)
            raise TemplateError(f"{where}: {exc.message or type(exc).__name__}") from None
        except Exception as exc:  # the template's own expressions: 1/0, range(10**9), a macro that calls itself…
            where = _error_location(exc, self.path, self.line_offset)
            raise TemplateError(f"{where}: {_reason(exc)}") from None
        return parse_messages(text, where=str(self.path))


def _reason(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _error_location(exc: BaseException, path: Path, line_offset: int = 0) -> str:
    """file:line of the template line that failed (Jinja rewrites tracebacks to point at template files)."""
    own = str(path.resolve())

    def located(filename: str, lineno: int) -> str:
        if filename in (own, str(path)):
            return f"{path}:{lineno + line_offset}"  # the file as the user named it
        return f"{filename}:{lineno}"

    lineno = getattr(exc, "lineno", None)
    if lineno is not None:
        return located(getattr(exc, "filename", None) or str(path), lineno)
    folder = str(path.parent.resolve())
    where = f"{path}:?"
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        # a template's frame as Jinja rewrote it, not Python code that happens to live under the same folder
        if filename.startswith(folder) and "__jinja_exception__" in tb.tb_frame.f_globals:
            where = located(filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def compile_template(source: str, path: Path, line_offset: int = 0) -> PromptTemplate:
    """Compile template text that lives in `path` (from line `line_offset + 1`); includes resolve beside it."""
    env = _environment(path.parent)
    try:
        code = env.compile(source, name=path.name, filename=str(path.resolve()))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}:{(exc.lineno or 0) + line_offset}: {exc.message}") from None
    except Exception as exc:  # nested deeper than Jinja's parser or Python's compiler go (RecursionError…)
        # a SyntaxError's own line is one of the Python code Jinja generated: meaningless here
        reason = f"{type(exc).__name__}: {exc.msg}" if isinstance(exc, SyntaxError) else _reason(exc)
        raise TemplateError(f"{path}: cannot compile the template (nested too deeply?): {reason}") from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return PromptTemplate(path=path, source=source, template=template, line_offset=line_offset)


def read_source(path: Path, what: str = "template") -> str:
    """A prompt file's text; a missing or unreadable file is one TemplateError line."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read {what}: {exc}") from None
    except ValueError:  # a NUL byte in the name
        raise TemplateError(f"{str(path)!r}: not a file name (it holds a NUL byte)") from None


def load_template(path: str | Path) -> PromptTemplate:
    """Load and compile a template file; syntax errors name file:line."""
    path = Path(path)
    return compile_template(read_source(path), path)
