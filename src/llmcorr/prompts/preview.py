"""What a prompt would send, without sending it: the rendered messages, their token count at an endpoint, and the most
the call could cost. `llmcorr prompt preview` and the dashboard's preview page both use it."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import EndpointConfig
from ..errors import UserError
from ..providers.base import Message
from ..scheduler import build_endpoints
from ..scheduler.tokens import TokenCounter, chat_prompt_tokens
from .env import EnvPolicy
from .prompty import Prompty, parse_prompty
from .render import compile_template

PASTED = Path("pasted.prompty")  # the name errors give a template that is not in a file


@dataclass(frozen=True)
class PromptPreview:
    messages: list[Message]
    prompt_tokens: int  # as the endpoint will charge them
    max_tokens: int  # completion tokens the prompt file allows
    endpoint: str
    cost_max: float | None  # prompt + max_tokens at the endpoint's prices; None when it has none

    def summary(self) -> str:
        cost = f" · at most ${self.cost_max:.6f}" if self.cost_max is not None else ""
        return (
            f"{len(self.messages)} messages · {self.prompt_tokens:,} prompt tokens ({self.endpoint}) · up to "
            f"{self.max_tokens:,} completion tokens{cost} · nothing was sent"
        )


@functools.lru_cache(maxsize=16)
def endpoint_counter(endpoint: EndpointConfig) -> TokenCounter:
    """The token counter the scheduler would use for `endpoint` (kept: a local model loads once)."""
    return build_endpoints([endpoint])[0].counter


def preview(
    prompty: Prompty, inputs: dict[str, Any], endpoint: EndpointConfig, where: str | None = None
) -> PromptPreview:
    """Render `prompty` with `inputs` (declared defaults fill the rest) and count it at `endpoint`; nothing is sent.
    A template that does not render raises TemplateError naming file:line (and `where`, a data file's row)."""
    messages = prompty.render(inputs, where)
    params = prompty.gen_params()
    tokens = chat_prompt_tokens(messages, endpoint_counter(endpoint))
    return PromptPreview(messages, tokens, params.max_tokens, endpoint.name, endpoint.cost(tokens, params.max_tokens))


def prompty_from_text(text: str, path: Path = PASTED, env: EnvPolicy | None = None) -> Prompty:
    """A prompt typed rather than read: a whole Prompty file (front matter first) or just a template body with role
    markers (no declared inputs: whatever inputs are given are its variables). `env`: the ${env:VAR} it may read."""
    if text.lstrip().startswith("---"):
        return parse_prompty(text.lstrip(), path, env)
    return Prompty(
        path=path, name=path.stem, description="", model={}, inputs={}, sample={}, template=compile_template(text, path)
    )


def parse_inputs(text: str, where: str = "--inputs") -> dict[str, Any]:
    """Inputs given as a JSON object; anything else is one clear line."""
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(given, dict):
        raise UserError(f"{where}: expected a JSON object of input names to values")
    return given
