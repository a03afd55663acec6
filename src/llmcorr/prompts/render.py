"""Render a chat prompt from a Jinja template file in a sandbox.

A template's output is split into messages at lines that hold only a role marker (`system:`, `user:`,
`assistant:`), the layout of Prompty files. Rendering is strict: an undefined variable is an error that names the
file and line, never a silent blank.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateError
from ..providers.base import Message, Role

# a role marker may start with `#` (`# system:`), as Prompt flow's templates write it
_ROLE_LINE = re.compile(r"^\s*#?\s*(system|user|assistant)\s*:\s*$", re.IGNORECASE)

#: the longest one render may take: a prompt renders in microseconds, so this is a loop gone wild (nested
#: `range(100000)`s, a macro calling itself twice) that would otherwise hang a run or pin a dashboard thread
RENDER_TIME_LIMIT_S = 2.0
#: the most characters one render may produce (also the most items `*` may make, and ~bits `**` may): far beyond any
#: context window, so more is a bomb, not a prompt
RENDER_SIZE_LIMIT = 1_000_000

_deadline: ContextVar[float | None] = ContextVar("llmcorr_render_deadline", default=None)


class RenderLimit(jinja2.TemplateError):
    """A render that went past RENDER_TIME_LIMIT_S or RENDER_SIZE_LIMIT."""


def _on_time() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimit(f"rendering took over {RENDER_TIME_LIMIT_S:g} s, the limit for one prompt (a loop too long?)")


class _GuardedLoops(CodeGenerator):
    """Jinja's code generator, with every `{% for %}` iterating through `environment.guarded(…)`, which keeps to the
    render's deadline even in loops that write nothing."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        guarded = nodes.Call(nodes.EnvironmentAttribute("guarded"), [node.iter], [], None, None, lineno=node.lineno)
        fields = [guarded if name == "iter" else getattr(node, name) for name in node.fields]
        super().visit_For(nodes.For(*fields, lineno=node.lineno, environment=node.environment), frame)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, stricter in two ways: reaching for an unsafe attribute (`__class__`, `__globals__`,
    a type's `mro`…) is an error at once, not an undefined value a template could pass along unnoticed; and a render
    is bounded in time (each loop step and call checks the deadline) and size (`*` and `**` are checked before they
    allocate; the output is counted as it is made)."""

    code_generator_class = _GuardedLoops
    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def guarded(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _on_time()
            yield item

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _on_time()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | bytes | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > RENDER_SIZE_LIMIT:
                    raise RenderLimit(f"'*' would make {len(seq) * times:,} items, over {RENDER_SIZE_LIMIT:,}")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = left.bit_length() * right  # 10 ** 10 ** 9: seconds of arithmetic and gigabytes, for one number
            if bits > RENDER_SIZE_LIMIT:
                raise RenderLimit(f"'**' would make a number of ~{bits:,} bits, over {RENDER_SIZE_LIMIT:,}")
        return super().call_binop(context, operator, left, right)


class IncludeRefused(jinja2.TemplateError):
    """An `{% include %}` (or `{% import %}`…) of a file that is, once links are resolved, outside the prompt's
    folder."""


def inside(folder: Path, name: str, what: str) -> Path:
    """The file `name` names in `folder`, links resolved, if it lies inside `folder` (itself resolved); a file that
    does not, through `..`, an absolute name or a link pointing out, is refused: its text would go to the endpoint."""
    root = folder.resolve()
    real = (root / name).resolve()
    if real != root and root not in real.parents:
        raise IncludeRefused(f"{what} {name!r} resolves to {real}, outside the prompt's folder {root} (refused)")
    return real


class _FolderLoader(jinja2.BaseLoader):
    """Templates from one folder, read from where their links lead only if that is inside the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        pieces = split_template_path(template)  # a `..` piece is TemplateNotFound
        real = inside(self.folder, "/".join(pieces), "include")
        try:
            source = real.read_text(encoding="utf-8")
            mtime = real.stat().st_mtime
        except OSError:  # not there, a folder…; text that is not UTF-8 stays a UnicodeDecodeError, as Jinja's own
            raise jinja2.TemplateNotFound(template) from None
        return source, str(real), lambda: real.is_file() and real.stat().st_mtime == mtime


def _environment(search_path: Path, strict: bool = True) -> ImmutableSandboxedEnvironment:
    """Strict: an undefined variable is an error, and block tags own their line's indentation (llmcorr's prompts).
    Not strict: Prompt flow's rendering of a DAG flow's templates, where an undefined variable renders as nothing."""
    return _Sandbox(
        loader=_FolderLoader(search_path),
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=strict,
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
        """The messages, rendered in at most RENDER_TIME_LIMIT_S and RENDER_SIZE_LIMIT characters."""
        return parse_messages(self.text(**variables), where=str(self.path))

    def text(self, **variables: Any) -> str:
        """The rendered text (a Prompt flow prompt node's output), within the same limits as `render`."""
        token = _deadline.set(time.monotonic() + RENDER_TIME_LIMIT_S)
        parts: list[str] = []
        size = 0
        try:
            for part in self.template.generate(**variables):
                size += len(part)
                parts.append(part)
                if size > RENDER_SIZE_LIMIT:
                    break  # the generator is closed as it goes out of scope
        except jinja2.TemplateError as exc:
            where = _error_location(exc, self.path, self.line_offset)
            raise TemplateError(f"{where}: {exc.message or type(exc).__name__}") from None
        except Exception as exc:  # the template's own expressions: 1/0, range(10**9), a macro that calls itself…
            where = _error_location(exc, self.path, self.line_offset)
            raise TemplateError(f"{where}: {_reason(exc)}") from None
        finally:
            _deadline.reset(token)
        if size > RENDER_SIZE_LIMIT:
            raise TemplateError(f"{self.path}: renders over {RENDER_SIZE_LIMIT:,} characters, the limit for one prompt")
        return "".join(parts)


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


def compile_template(source: str, path: Path, line_offset: int = 0, strict: bool = True) -> PromptTemplate:
    """Compile template text that lives in `path` (from line `line_offset + 1`); includes resolve beside it.
    `strict=False`: as Prompt flow renders (an undefined variable is empty)."""
    env = _environment(path.parent, strict)
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


def load_template(path: str | Path, strict: bool = True) -> PromptTemplate:
    """Load and compile a template file; syntax errors name file:line."""
    path = Path(path)
    return compile_template(read_source(path), path, strict=strict)
