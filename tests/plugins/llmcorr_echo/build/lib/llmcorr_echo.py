"""An example llmcorr provider plugin: the kind "echo" answers every chat with its last message, as configured.

In llmcorr.toml:

    [[endpoints]]
    name = "echo"
    kind = "echo"
    prefix = "ECHO "      # this kind's own options (EchoOptions): checked when the config loads
    upper = true
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmcorr.config import EndpointConfig
from llmcorr.providers import Completion, GenParams, Message, Provider, ProviderKind


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = "echo: "
    upper: bool = False


class EchoProvider(Provider):
    kind = "echo"
    max_concurrency = 4

    def __init__(self, options: EchoOptions) -> None:
        self.options = options

    @property
    def model(self) -> str:
        return "echo-1"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        start = time.perf_counter()
        text = self.options.prefix + (messages[-1].content if messages else "")
        text = text.upper() if self.options.upper else text
        words = [w for m in messages for w in m.content.split()]
        return Completion(
            text=text[: params.max_tokens * 8],
            input_tokens=len(words),
            output_tokens=len(text.split()),
            latency_ms=(time.perf_counter() - start) * 1000,
            model=self.model,
            finish_reason="stop",
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.options.model_dump()}


def build(config: EndpointConfig) -> Provider:
    options = config.options if isinstance(config.options, EchoOptions) else EchoOptions()
    return EchoProvider(options)


KIND = ProviderKind(
    "echo",
    build,
    takes_base_url=False,
    needs_model=False,
    remote=False,
    options=EchoOptions,
    about="answers with the prompt's last message",
)
