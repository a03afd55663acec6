"""`${env:VAR}` in a prompt file's front matter: where it is read, and which variables may be.

Prompty reads `${env:VAR}` in a model's `configuration` and `parameters`; llmcorr does too (a field whose name holds
"key" keeps the *name* of its variable, never its value). Anywhere else (`inputs` defaults, `sample`, …) a value
would go into the prompt, hence to the endpoint, the store and the spans, so a variable is read there only when the
user allows it by name (`--allow-env VAR`), never one that holds a key: a name containing KEY, TOKEN, SECRET or
PASSWORD, or one an endpoint's `api_key = "${env:VAR}"` names. A value read that way is scrubbed from the store and
the spans as keys are (`keys.remember_secret`). A reference not read is left as written. The dashboard's preview
reads no variable at all (`NO_ENV`): it must never show the server's environment.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..config import Config
from ..errors import UserError
from ..keys import remember_secret

log = logging.getLogger(__name__)
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
PROMPTY_PLACES = ("configuration", "parameters")  # under `model:`: where Prompty itself reads ${env:VAR}


def secret_name(name: str, key_names: Iterable[str] = ()) -> bool:
    """Whether variable `name` may hold a credential: its name says so, or an endpoint's key is read from it."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS) or name in set(key_names)


@dataclass(frozen=True)
class EnvPolicy:
    """Which `${env:VAR}` a prompt file may read. `read_environment=False`: none at all (the dashboard's preview)."""

    allowed: frozenset[str] = frozenset()  # variables the user allowed outside the Prompty places
    key_names: frozenset[str] = frozenset()  # variables endpoints read their keys from: never read
    read_environment: bool = True
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, compare=False, repr=False)

    def value(self, name: str, where: str, prompty_place: bool) -> str | None:
        """The value of `${env:name}` found at `where` (file: field), or None to leave the reference as written."""
        if not self.read_environment or secret_name(name, self.key_names):
            return None
        if prompty_place:
            return self.environ.get(name)
        if name not in self.allowed:
            log.warning("%s: ${env:%s} left as written (to read it: --allow-env %s)", where, name, name)
            return None
        value = self.environ.get(name)
        if value is not None:
            remember_secret(value)  # scrubbed from the store and the spans, as a key is
        return value


NO_ENV = EnvPolicy(read_environment=False)  # the dashboard's preview: every reference left as written
_current: contextvars.ContextVar[EnvPolicy | None] = contextvars.ContextVar("llmcorr_env_policy", default=None)


def current_policy() -> EnvPolicy:
    """The policy a prompt file loaded now follows: the innermost `allowing_env` block's, else the default one (the
    Prompty places only)."""
    return _current.get() or EnvPolicy()


def key_names(config: Config) -> set[str]:
    """The variables the config's endpoints read their keys from."""
    return {name for e in [config.provider, *config.endpoints] if (name := e.key_env)}


def env_policy(names: Iterable[str], key_names: Iterable[str] = ()) -> EnvPolicy:
    """The policy for `--allow-env NAME…`; a name that may hold a key is refused (one line, exit 2)."""
    keys = frozenset(k for k in key_names if k)
    allowed = frozenset(names)
    for name in sorted(allowed):
        if secret_name(name, keys):
            raise UserError(
                f"--allow-env {name}: this variable may hold a credential (its name holds KEY, TOKEN, SECRET or "
                "PASSWORD, or an endpoint reads its api_key from it); it is never read into a prompt"
            )
        if not name.isidentifier() or not name.isascii():
            raise UserError(f"--allow-env {name!r}: expected an environment variable name (letters, digits and _)")
    return EnvPolicy(allowed=allowed, key_names=keys)


@contextmanager
def allowing_env(policy: EnvPolicy) -> Iterator[None]:
    """Prompt files loaded inside the block (and the tasks it starts) follow `policy`."""
    token = _current.set(policy)
    try:
        yield
    finally:
        _current.reset(token)
