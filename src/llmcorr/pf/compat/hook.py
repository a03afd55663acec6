"""The import hook behind `promptflow_names()`: while a flow loads and runs, `import promptflow...` finds llmcorr's
stand-ins, unless the real promptflow is installed (then the hook does nothing and the real one is used).

A finder at the front of `sys.meta_path` answers for `promptflow` and its submodules: the four it supplies are
built from llmcorr's modules (core.py, connections.py, tracing.py, prompty.py, pf/metrics.py); any other submodule
is a ModuleNotFoundError saying llmcorr does not supply it, and any other name from a supplied one an ImportError
saying the stand-in does not offer it. When the outermost block ends the finder is removed, and so is every stand-in
module from `sys.modules`: nothing named promptflow is left behind.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

ROOT = "promptflow"

# what each stand-in offers: the names promptflow 1.18.5 exports there that llmcorr can honour
SUPPLIED: dict[str, tuple[str, ...]] = {
    "promptflow": ("ToolProvider", "log_flow_metric", "log_metric", "tool"),
    "promptflow.core": (
        "AsyncPrompty",
        "AzureOpenAIModelConfiguration",
        "ModelConfiguration",
        "OpenAIModelConfiguration",
        "Prompty",
        "ToolProvider",
        "log_flow_metric",
        "log_metric",
        "tool",
    ),
    "promptflow.tracing": ("ThreadPoolExecutorWithContext", "start_trace", "trace"),
    "promptflow.connections": ("AzureOpenAIConnection", "CustomConnection", "OpenAIConnection", "ServerlessConnection"),
    # where promptflow defines Prompty: flows import it from there too (flex-flows/eval-code-quality)
    "promptflow.core._flow": ("AsyncPrompty", "Prompty"),
}
PACKAGES = frozenset({"promptflow", "promptflow.core"})  # the stand-ins that have submodules
WHY_NOT = {
    "promptflow.azure": "Azure ML workspaces are Azure-only",
    "promptflow.client": "runs are llmcorr's: `llmcorr run`, `llmcorr.run`",
    "promptflow.tools": "call LLMs through Prompty or llmcorr.chat; llmcorr.toml endpoints are the connections",
    "promptflow.evals": "install promptflow to use its evaluators",
}


class NotSupplied(ModuleNotFoundError):
    """A promptflow module llmcorr's stand-in does not supply."""


class NotOffered(ImportError):
    """A name llmcorr's stand-in for a promptflow module does not offer."""


def _offered(module: str) -> dict[str, Any]:
    """The names stand-in `module` offers (imported here, when first asked for: prompty.py imports runs/)."""
    from . import connections, core, prompty, tracing

    everything: dict[str, Any] = {
        **{n: getattr(core, n) for n in core.__all__},
        **{n: getattr(connections, n) for n in connections.__all__},
        **{n: getattr(tracing, n) for n in tracing.__all__},
        **{n: getattr(prompty, n) for n in prompty.__all__},
        "log_flow_metric": core.log_metric,  # Prompt flow's older name
    }
    return {name: everything[name] for name in SUPPLIED[module]}


def _not_offered(module: str) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        offered = ", ".join(SUPPLIED[module])
        raise NotOffered(
            f"llmcorr's stand-in for {module} does not offer {name!r} (it offers: {offered});"
            " install promptflow to use it",
            name=module,
        )

    return __getattr__


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        module.__dict__.update(_offered(name))
        module.__dict__["__all__"] = list(SUPPLIED[name])
        module.__dict__["__getattr__"] = _not_offered(name)
        module.__dict__["__doc__"] = f"llmcorr's stand-in for {name} (promptflow is not installed)"


class _Finder(importlib.abc.MetaPathFinder):
    loader = _Loader()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname in SUPPLIED:
            return importlib.machinery.ModuleSpec(fullname, self.loader, is_package=fullname in PACKAGES)
        top = ".".join(fullname.split(".")[:2])
        why = WHY_NOT.get(top, "llmcorr supplies promptflow, .core, .tracing and .connections")
        raise NotSupplied(f"llmcorr does not supply {fullname} ({why})", name=fullname)


_finder = _Finder()
_lock = threading.Lock()
_depth = 0  # how many promptflow_names() blocks are open, in any thread
_installed = False
_stashed: dict[str, ModuleType] = {}  # promptflow modules imported before (a namespace promptflow-evals installs)


def real_promptflow() -> bool:
    """Whether the real promptflow (its `promptflow.core`) is installed: looked up on sys.path, importing nothing
    (promptflow-evals alone installs a `promptflow` namespace without it)."""
    spec = importlib.machinery.PathFinder.find_spec(ROOT)
    if spec is None or spec.submodule_search_locations is None:
        return False
    return importlib.machinery.PathFinder.find_spec(f"{ROOT}.core", list(spec.submodule_search_locations)) is not None


def _promptflow_modules() -> dict[str, ModuleType]:
    return {k: m for k, m in list(sys.modules.items()) if k == ROOT or k.startswith(ROOT + ".")}


@contextmanager
def promptflow_names() -> Iterator[None]:
    """Within this block (any thread), `promptflow` imports find llmcorr's stand-ins; nestable. Outside every
    block, sys.modules and sys.meta_path are as they were."""
    global _depth, _installed
    with _lock:
        if _depth == 0 and not real_promptflow():
            _stashed.update(_promptflow_modules())  # set aside while the stand-ins answer, put back after
            for key in _stashed:
                del sys.modules[key]
            sys.meta_path.insert(0, _finder)
            _installed = True
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _installed:
                sys.meta_path[:] = [f for f in sys.meta_path if f is not _finder]
                for key, module in _promptflow_modules().items():
                    if getattr(module, "__loader__", None) is _Finder.loader:
                        del sys.modules[key]
                sys.modules.update(_stashed)
                _stashed.clear()
                _installed = False
