"""A flow's failure on a row as people read it: the exception's type and message, and where in the user's own code
it was raised (not llmcorr's, the standard library's or an installed package's), with its notes (a DAG node's name).

    describe_error(exc, flow)   →   "ValueError: no price (flows/price.py:12)"
"""

from __future__ import annotations

import inspect
import os
import sysconfig
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .flows import Flow

_LIBRARIES = tuple(
    str(Path(p).resolve()) + os.sep
    for p in {
        str(Path(__file__).parent.parent),  # llmcorr itself
        *(sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")),
    }
)


def _user_frame(exc: BaseException, flow: Flow | None) -> str | None:
    """`file:line` of the innermost frame of the user's own code in the exception's traceback: not llmcorr's, the
    standard library's or an installed package's (else the innermost in the flow's file). The path is relative to
    the working directory when it lies beneath it."""
    frames = traceback.extract_tb(exc.__traceback__)
    flow_file = _flow_file(flow) if flow is not None else None
    mine = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_LIBRARIES)]
    mine = mine or [f for f in frames if flow_file is not None and Path(f.filename).resolve() == flow_file]
    if not mine or mine[-1].filename.startswith("<"):
        return None
    path = Path(mine[-1].filename).resolve()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return f"{shown}:{mine[-1].lineno}"


def _flow_file(flow: Flow) -> Path | None:
    if flow.file is not None:
        return Path(flow.file).resolve()
    target = flow.fn if inspect.isfunction(flow.fn) or inspect.ismethod(flow.fn) else type(flow.fn)
    try:
        path = inspect.getsourcefile(target)
    except TypeError:
        return None
    return Path(path).resolve() if path else None


def describe_error(exc: BaseException, flow: Flow | None = None) -> str:
    """A flow's failure on a row, as the store, `runs logs` and the trace page show it: the exception's type and
    message and where in the user's code it was raised — `ValueError: no price (flows/price.py:12)`."""
    places = [p for p in (_user_frame(exc, flow), *getattr(exc, "__notes__", ())) if p]  # notes: "in node 'x' of …"
    message = " ".join(str(exc).splitlines()).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} ({'; '.join(places)})" if places else text
