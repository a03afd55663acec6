"""`promptflow.core.Prompty` / `AsyncPrompty` as llmcorr supplies them: a `.prompty` file loaded by llmcorr's own
loader (its errors name file:line, its Jinja is sandboxed) and asked through `llmcorr.chat`/`achat`, so the run's
scheduler, quotas, cache and tracing apply.

    prompty = Prompty.load(source="eval.prompty", model={"configuration": config, "parameters": {"max_tokens": 64}})
    answer = prompty(question="...")            # AsyncPrompty: await prompty(question="...")

As in Prompt flow: `model=` is merged into the file's `model` (a dict merges key by key; a configuration object
replaces the file's); a relative `source` is read from the flow's folder (Prompt flow runs a flow from its folder),
else from the working directory. The configuration's `connection` names the endpoint that answers (resolved when
the file loads, inside a run: an unknown one fails then, naming it and the endpoints there are); a configuration
without one (inline endpoint and key) is answered by any of the run's endpoints — llmcorr's endpoints decide where a
request goes, never a file's `azure_endpoint`, `azure_deployment` or key.

The answer: `model.response: first` (the default) gives the first choice's text, or, with `response_format:
{type: json_object}`, its JSON parsed (only the keys the file's `outputs` names, when it names any); `response: all`
gives an OpenAI-shaped completion (`answer.choices[0].message.content`, also by key). `response_format` itself is not
sent: llmcorr's requests take max_tokens, temperature and stop from `model.parameters`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import is_dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from ...errors import TemplateError, UserError
from ...prompts.prompty import load_prompty
from ...providers.base import Message
from ...runs.flows import achat, chat
from ...scheduler.tokens import chat_prompt_tokens, tiktoken_counter
from ...tracing import trace
from ..connections import current
from ..flex import AttrDict, current_folder


def _merged(origin: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Prompt flow's merge of a `model=` override: dicts key by key, anything else replaced."""
    merged = {k: (_merged(origin.get(k) or {}, v) if isinstance(v, dict) else v) for k, v in override.items()}
    return merged | {k: v for k, v in origin.items() if k not in merged}


def _number(params: dict[str, Any], key: str, kind: type[int] | type[float], path: Path) -> Any:
    if params.get(key) is None:
        return None
    value = params[key]
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{path}: model.parameters.{key}: expected a number, got {value!r}") from None
    if kind is int and number < 1:
        raise TemplateError(f"{path}: model.parameters.{key}: expected a whole number >= 1, got {value!r}")
    return number


class Prompty:
    """A `.prompty` file to call like a function (sync flows; `AsyncPrompty` in async ones)."""

    def __init__(self, path: str | PathLike[str], model: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(f"Prompty.load({path}): llmcorr does not take {', '.join(sorted(kwargs))} (only model=)")
        self.path = Path(path)
        self._file = load_prompty(self.path)
        if model is not None and not isinstance(model, dict):
            raise UserError(f"Prompty.load({path}): model= must be a dict (configuration, parameters, response)")
        self._model = _merged(self._file.model, model or {})
        self._where = f"{self.path}: model.configuration"
        self._connection = self._connection_of(self._model.get("configuration"))
        connections = current()
        self._resolved = connections is not None or self._connection is None
        self._endpoint = (
            connections.endpoint(self._connection, self._where) if connections and self._connection else None
        )
        params = self._model.get("parameters") or {}
        if not isinstance(params, dict):
            raise TemplateError(f"{self.path}: model.parameters must be a mapping")
        stop = params.get("stop")
        self._sampling: dict[str, Any] = {
            "max_tokens": _number(params, "max_tokens", int, self.path),
            "temperature": _number(params, "temperature", float, self.path),
            "stop": [stop] if isinstance(stop, str) else (list(stop) if isinstance(stop, list) else None),
        }
        response_format = params.get("response_format")
        self._json = isinstance(response_format, dict) and response_format.get("type") == "json_object"
        self._all = self._model.get("response", "first") == "all"
        outputs = self._file.front_matter.get("outputs")
        self._outputs = list(outputs) if isinstance(outputs, dict) else []

    def _connection_of(self, configuration: Any) -> str | None:
        """The configuration's connection; a dict naming one with an inline endpoint or key too is Prompt flow's
        error, and llmcorr's."""
        if isinstance(configuration, dict):
            kept = ("type", "connection", "model", "azure_deployment")
            inline = [k for k, v in configuration.items() if v and k not in kept]
            name = configuration.get("connection")
            if name and inline:
                raise UserError(f"{self._where}: a connection and {', '.join(inline)} cannot both be given")
            return str(name) if name else None
        if configuration is None or is_dataclass(configuration):
            name = getattr(configuration, "connection", None)
            return str(name) if name else None
        got = type(configuration).__name__
        raise UserError(f"{self._where}: expected a mapping or a model configuration, got {got}")

    @classmethod
    def load(cls, source: str | PathLike[str], **kwargs: Any) -> Any:
        """The Prompty in `source` (a `.prompty` file; relative: from the flow's folder, else the working
        directory)."""
        path = Path(source)
        base = current_folder()
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.exists():
            raise UserError(f"Prompty.load: {path.absolute()} does not exist")
        if path.suffix != ".prompty":
            raise UserError(f"Prompty.load: {path} is not a .prompty file")
        return cls(path, **kwargs)

    def _messages(self, args: tuple[Any, ...], inputs: dict[str, Any]) -> list[Message]:
        if args:
            raise TypeError("a Prompty is called with keyword arguments only")
        if not inputs and self._file.sample:
            inputs = dict(self._file.sample)  # Prompt flow's rule: no inputs, the file's sample
        return self._file.render(inputs)

    def _route(self) -> str | None:
        """The endpoint that answers: the configuration's connection's (None: any of the run's)."""
        if self._resolved or self._connection is None:
            return self._endpoint
        connections = current()
        return connections.endpoint(self._connection, self._where) if connections else None

    def _answer(self, text: str) -> Any:
        if self._all:
            message = AttrDict(role="assistant", content=text)
            return AttrDict(choices=[AttrDict(index=0, message=message, finish_reason="stop")])
        if not self._json:
            return text
        try:
            value = json.loads(text)
        except ValueError:
            short = text if len(text) <= 80 else text[:77] + "..."
            why = f"{self.path}: response_format is json_object but the answer is not JSON: {short!r}"
            raise ValueError(why) from None
        if not self._outputs:
            return value
        missing = [k for k in self._outputs if not isinstance(value, dict) or k not in value]
        if missing:
            raise ValueError(f"{self.path}: the answer has no {', '.join(missing)} (the file's outputs)")
        return {k: value[k] for k in self._outputs}

    def _call(self, *args: Any, **inputs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # a sync flow's thread: chat waits for the answer
        else:
            raise UserError(f"{self.path}: inside an async flow, load it as AsyncPrompty and await the call")
        text = chat(self._messages(args, inputs), endpoint=self._route(), **self._sampling)
        return self._answer(text)

    __call__ = trace(_call, name="Prompty")

    def render(self, *args: Any, **inputs: Any) -> str:
        """The rendered messages, as Prompt flow shows them: the text of a list of role/content dicts."""
        return str([m.to_dict() for m in self._messages(args, inputs)])

    def estimate_token_count(self, *args: Any, **inputs: Any) -> int:
        """Prompt tokens (counted as OpenAI counts them) plus the file's max_tokens, as Prompt flow estimates."""
        tokens = chat_prompt_tokens(self._messages(args, inputs), tiktoken_counter())
        return tokens + (self._sampling["max_tokens"] or 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class AsyncPrompty(Prompty):
    """A `.prompty` file to await like an async function."""

    async def _acall(self, *args: Any, **inputs: Any) -> Any:
        text = await achat(self._messages(args, inputs), endpoint=self._route(), **self._sampling)
        return self._answer(text)

    __call__ = trace(_acall, name="AsyncPrompty")


__all__ = ["AsyncPrompty", "Prompty"]
