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
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError
from ..providers.base import Message, Role

_ROLE_LINE = re.compile(r"^\s*(system|user|assistant)\s*:\s*$", re.IGNORECASE)


def _environment(search_path: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
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
        return parse_messages(text, where=str(self.path))


def _error_location(exc: jinja2.TemplateError, path: Path, line_offset: int = 0) -> str:
    """file:line of the template line that failed (Jinja rewrites tracebacks to point at template files)."""
    own = str(path.resolve())

    def located(filename: str, lineno: int) -> str:
        return f"{filename}:{lineno + (line_offset if filename in (own, str(path)) else 0)}"

    lineno = getattr(exc, "lineno", None)
    if lineno is not None:
        return located(getattr(exc, "filename", None) or str(path), lineno)
    folder = str(path.parent.resolve())
    where = f"{path}:?"
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(folder):
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


def load_template(path: str | Path) -> PromptTemplate:
    """Load and compile a template file; syntax errors name file:line."""
    path = Path(path)
    return compile_template(read_source(path), path)
