"""What a prompt would send, without sending it: the rendered messages, their token count at an endpoint, and the most
the call could cost. `llmcorr prompt preview` and the dashboard's preview page both use it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import EndpointConfig
from ..errors import UserError
from ..providers.base import Message
from ..scheduler.tokens import TokenCounter, bytes_estimate, chat_prompt_tokens, tiktoken_counter
from .env import EnvPolicy
from .prompty import Prompty, parse_prompty
from .render import compile_template

PASTED = Path("pasted.prompty")  # the name errors give a template that is not in a file


@dataclass(frozen=True)
class PromptPreview:
    messages: list[Message]
    prompt_tokens: int  # as the endpoint will charge them (about, for an in-process model: `approximate`)
    max_tokens: int  # completion tokens the prompt file allows
    endpoint: str
    cost_max: float | None  # prompt + max_tokens at the endpoint's prices; None when it has none
    approximate: bool = False

    def summary(self) -> str:
        cost = f" · at most ${self.cost_max:.6f}" if self.cost_max is not None else ""
        about = "about " if self.approximate else ""
        return (
            f"{len(self.messages)} messages · {about}{self.prompt_tokens:,} prompt tokens ({self.endpoint}) · up to "
            f"{self.max_tokens:,} completion tokens{cost} · nothing was sent"
        )


def endpoint_counter(endpoint: EndpointConfig) -> TokenCounter:
    """How `endpoint` counts a prompt, without building a scheduler or loading a model: a server's kind is counted as
    the scheduler charges it before calibration (tiktoken); an in-process model (nothing charged, no quota) by the
    byte estimate, which the summary marks as approximate."""
    return tiktoken_counter() if endpoint.provider_kind.remote else bytes_estimate


def preview(
    prompty: Prompty, inputs: dict[str, Any], endpoint: EndpointConfig, where: str | None = None
) -> PromptPreview:
    """Render `prompty` with `inputs` (declared defaults fill the rest) and count it at `endpoint`; nothing is sent.
    A template that does not render raises TemplateError naming file:line (and `where`, a data file's row)."""
    messages = prompty.render(inputs, where)
    params = prompty.gen_params()
    tokens = chat_prompt_tokens(messages, endpoint_counter(endpoint))
    cost = endpoint.cost(tokens, params.max_tokens)
    approximate = not endpoint.provider_kind.remote
    return PromptPreview(messages, tokens, params.max_tokens, endpoint.name, cost, approximate)


def prompty_from_text(text: str, path: Path = PASTED, env: EnvPolicy | None = None) -> Prompty:
    """A prompt typed rather than read: a whole Prompty file (front matter first) or just a template body with role
    markers (no declared inputs: whatever inputs are given are its variables). `env`: the ${env:VAR} it may read."""
    if text.lstrip().startswith("---"):
        return parse_prompty(text.lstrip(), path, env)
    return Prompty(
        path=path, name=path.stem, description="", model={}, inputs={}, sample={}, template=compile_template(text, path)
    )


def parse_inputs(text: str, where: str = "--inputs", names: str = "input") -> dict[str, Any]:
    """Inputs (or a flow's `names`, e.g. its constructor's arguments) given as a JSON object; anything else is one
    clear line, naming the line as well as the column past the first line."""
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        raise UserError(f"{where}: not valid JSON ({exc.msg} at {at})") from None
    if not isinstance(given, dict):
        raise UserError(f"{where}: expected a JSON object of {names} names to values")
    return given
