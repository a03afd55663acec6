"""What every command shares: the console, logging, provider options, confirmations."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..config import Config
from ..errors import UserError
from ..providers import registry

console = Console()
err_console = Console(stderr=True)


class DefaultProvider(str):
    """`--provider`'s value when the command line left it out: a `--base-url` then means an OpenAI-compatible server,
    while an explicit `--provider local` with a URL is a contradiction to report."""

    __slots__ = ()


def _mark_default(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    source = ctx.get_parameter_source(param.name) if param.name else None
    return DefaultProvider(value) if source is not None and source.name in ("DEFAULT", "DEFAULT_MAP") else value


ProviderKind = Annotated[
    str,
    typer.Option(
        "--provider",
        help="local (embedded llama.cpp; the default, unless --base-url names a server), openai (any "
        "OpenAI-compatible server), azure, vllm, ollama, llamacpp, or a plugin's kind",
        callback=_mark_default,
    ),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model name sent to an OpenAI-compatible server")]
ModelPathOpt = Annotated[
    Path | None, typer.Option("--model-path", help="a GGUF file for the local provider (default: SmolLM2-135M)")
]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="e.g. http://127.0.0.1:8000/v1")]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option("--api-key-env", help="environment variable holding the API key (the key is never stored)"),
]
ConcurrencyOpt = Annotated[int | None, typer.Option("--max-concurrency", help="requests in flight at once")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="answer yes to any confirmation")]
EndpointOpt = Annotated[
    list[str] | None, typer.Option("--endpoint", "-e", help="an endpoint from llmcorr.toml (repeat to spread a run)")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="config file (default: ./llmcorr.toml if present)")]
OtlpOpt = Annotated[
    str | None,
    typer.Option("--otlp", help="also send the run's spans to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318"),
]
NoTraceOpt = Annotated[bool, typer.Option("--no-trace", help="record no spans for this run")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="call the LLM even when the answer is cached")]
AllowEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-env",
        metavar="VAR",
        help="let the prompt file's inputs/sample read ${env:VAR} (repeatable; never a key's variable)",
    ),
]
ExecutorOpt = Annotated[
    str, typer.Option(help="local (this process), or ray: the rows spread over a Ray cluster (needs the ray extra)")
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="the Ray cluster to use (auto, ray://HOST:10001…); default: a local instance")
]


def setup_logging(quiet: bool = False) -> None:
    """llmcorr's own notes on stderr (INFO, or WARNING with --quiet); other libraries only warn."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("llmcorr: %(message)s"))
    logger = logging.getLogger("llmcorr")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def load_config(
    provider: str = DefaultProvider("local"),
    model: str | None = None,
    model_path: Path | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    max_concurrency: int | None = None,
    path: Path | None = None,
    otlp: str | None = None,
    no_trace: bool = False,
) -> Config:
    """The config file (if any) plus the default endpoint described by the command's flags. `--base-url` means an
    OpenAI-compatible server unless `--provider` says otherwise; the embedded model takes neither a URL nor a model
    name."""
    if provider not in registry.names():
        raise UserError(f"--provider: expected one of {', '.join(registry.names())}, got {provider!r}")
    if provider == "local" and (base_url is not None or model is not None):
        if not isinstance(provider, DefaultProvider):
            flag = "--base-url" if base_url is not None else "--model"
            raise UserError(
                f"--provider local runs the embedded llama.cpp model and takes no {flag}: for a server use --provider "
                "openai (or leave --provider out and give --base-url); for another GGUF file, --model-path"
            )
        if base_url is None:
            raise UserError(
                "--model names a model on a server: add --base-url URL (an OpenAI-compatible server) or --provider "
                "openai|azure; the embedded llama.cpp model takes --model-path FILE.gguf instead"
            )
        provider = "openai"  # a URL is a server, never the embedded model
    settings: dict[str, Any] = {
        "name": provider,
        "kind": provider,
        "model": model,
        "model_path": model_path,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "max_concurrency": max_concurrency,
    }
    flags = {k: v for k, v in settings.items() if v is not None}
    # provider flags name the endpoint to use: they win over llmcorr.toml's `default`
    chosen = provider != "local" or model_path is not None or max_concurrency is not None
    tracing = False if no_trace else None
    return Config.load(path, provider=flags, default=[] if chosen else None, otlp=otlp, tracing=tracing)


def confirm(question: str, yes: bool) -> bool:
    """Ask only a person at a terminal; a script must pass --yes."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(f"{question} needs confirmation: pass --yes (stdin is not a terminal)")
    return typer.confirm(question, default=False)


def parse_map_options(items: list[str]) -> dict[str, str]:
    """`--map question='${data.q}'` → {"question": "${data.q}"}."""
    return parse_pairs(items, "--map", "input='${data.column}'")


def parse_pairs(items: list[str], option: str, expected: str) -> dict[str, str]:
    """Repeated `OPTION KEY=VALUE` → {KEY: VALUE}; one line naming the option for an item without `=`."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r}: expected {expected}")
        pairs[key.strip()] = value.strip()
    return pairs
