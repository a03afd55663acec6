"""The Python API: real keyword parameters (help() and signatures show them, a typo names the public function) with
the engine's defaults, which are also the CLI's."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import typer

import llmcorr
from llmcorr.cli import app
from llmcorr.runs.batch import run_batch_async
from llmcorr.runs.batch_plan import plan_batch
from llmcorr.runs.correct_options import DEFAULTS
from llmcorr.runs.correction import correct_async, plan_correction

PUBLIC = [llmcorr.correct, llmcorr.estimate, llmcorr.run, llmcorr.resume]


def keywords(fn: Callable[..., Any]) -> dict[str, Any]:
    """A function's keyword parameters and their defaults."""
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)
    }


def cli_defaults(command: str) -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return {p.name: p.default for p in group.commands[command].params if p.name}


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_the_public_functions_take_real_keywords_and_a_typo_names_them(fn: Callable[..., Any]) -> None:
    parameters = inspect.signature(fn).parameters.values()
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters), "no **options"
    assert all(p.annotation is not p.empty for p in parameters)
    with pytest.raises(TypeError, match=rf"^{fn.__name__}\(\) got an unexpected keyword argument 'shotz'$"):
        fn("anything.csv", shotz=3)
    text = pydoc_text(fn)
    assert "shots" in text if fn in (llmcorr.correct, llmcorr.estimate) else "output" in text


def pydoc_text(fn: Callable[..., Any]) -> str:
    import pydoc

    return pydoc.render_doc(fn, renderer=pydoc.plaintext)


def test_the_api_takes_every_engine_option_with_the_engines_defaults() -> None:
    """`CorrectOptions` holds a correct run's options and their defaults; the public functions take each of them,
    and the engine's other keywords, with the same defaults."""
    planning = {k: v for k, v in keywords(plan_correction).items() if k != "options"}
    running = {k: v for k, v in keywords(correct_async).items() if k != "options"}
    # the engine takes a progress display (None: none); the API, whether to show the CLI's bar
    assert running.pop("progress") is None
    assert keywords(llmcorr.correct) == DEFAULTS | planning | running | {"progress": False}
    assert keywords(llmcorr.estimate) == DEFAULTS | planning
    assert keywords(llmcorr.run) == keywords(plan_batch) | keywords(run_batch_async) | {"progress": False}


# CLI option -> (API keyword, the CLI default as the API spells it); options the API spells the same are compared
# as they are. Left out on purpose: how a person vs a script is served (progress bar, confirmation), and the provider
# flags (the API takes a Provider, an EndpointConfig or a Config).
CORRECT_CLI = {
    "shots": ("shots", int),
    "no_gate": ("gate", lambda v: not v),
    "send_all": ("selective", lambda v: not v),
    "no_cache": ("cache", lambda v: not v),
    "endpoint": ("endpoints", lambda v: v),
    "column": ("columns", lambda v: v),
}
SKIPPED = {"predictions", "config_path", "otlp", "no_trace", "yes", "quiet", "provider", "model", "model_path"}
SKIPPED |= {"base_url", "api_key_env", "max_concurrency"}


@pytest.mark.parametrize("command", ["correct", "estimate"])
def test_the_cli_and_the_api_share_their_defaults_for_correct(command: str) -> None:
    api = keywords(llmcorr.correct)
    compared = 0
    for option, default in cli_defaults(command).items():
        if option in SKIPPED:
            continue
        name, convert = CORRECT_CLI.get(option, (option, lambda v: v))
        assert name in api, f"--{option} has no API keyword"
        assert convert(default) == api[name], f"--{option}: CLI {default!r} vs API {name}={api[name]!r}"
        compared += 1
    assert compared >= 20


def test_the_cli_and_the_api_share_their_defaults_for_run() -> None:
    api = keywords(llmcorr.run)
    renamed = {"map_": "mapping", "endpoint": "endpoints", "run": "upstream", "connection": "connections"}
    renamed |= {"override": "overrides"}
    for option, default in cli_defaults("run").items():
        if option in {"flow", "config_path", "otlp", "no_trace", "quiet", "yes", "run_file"}:  # the CLI's own
            continue
        if option == "no_cache":
            assert api["cache"] is (not default)
            continue
        name = renamed.get(option, option)
        assert name in api, f"--{option} has no API keyword"
        assert default == api[name], f"--{option}: CLI {default!r} vs API {name}={api[name]!r}"
