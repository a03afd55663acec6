"""A prompt file as a batch flow: each row's inputs → the rendered messages (every row renders before the first
request, so a missing input is reported with its row number before any token is spent)."""

from __future__ import annotations

from typing import Any

from ..data import Where
from ..prompts.prompty import Prompty
from .engine import WorkItem


class PromptJob:
    def __init__(self, prompty: Prompty, where: Where, source: str) -> None:
        self.prompty = prompty
        self.where = where
        self.source = source

    def item(self, i: int, inputs: dict[str, Any], mapping: dict[str, str]) -> WorkItem:
        refs = ", ".join(f"{name} from {column}" for name, column in mapping.items())
        where = f"{self.source}: {self.where(i)}" + (f" (mapped: {refs})" if refs else "")
        return WorkItem(index=i, sample_id=str(i), inputs=inputs, messages=self.prompty.render(inputs, where=where))
