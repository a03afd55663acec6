"""Where llmcorr keeps things: its home folder (`LLMCORR_HOME`, else ~/.llmcorr: the SQLite store, the secrets
file) and a shared PostgreSQL store's URL (`LLMCORR_STORE`), which prints without its password. A leaf module: the
config, the key store and the run store all read it, and it reads none of them."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

HOME_ENV = "LLMCORR_HOME"
STORE_ENV = "LLMCORR_STORE"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".llmcorr").expanduser()


class StoreURL:
    """A PostgreSQL store's URL. It prints as `postgresql://user@host:port/db`: the password (and the query, which
    may carry one) never reaches a message, a log or a run's spec; `secret` is for opening the connection only."""

    __slots__ = ("secret",)

    def __init__(self, url: str) -> None:
        if not url.startswith(POSTGRES_SCHEMES):
            raise ConfigError("store_url: expected a postgresql://user@host:port/db URL (PostgreSQL)")
        self.secret = url

    def __str__(self) -> str:
        scheme, _, rest = self.secret.partition("://")
        authority, slash, path = rest.partition("/")
        userinfo, at, hosts = authority.rpartition("@")  # the host part never holds the password
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user + '@' if at and user else ''}{hosts}{slash}{path.partition('?')[0]}"

    def __repr__(self) -> str:
        return f"StoreURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreURL) and other.secret == self.secret

    def __hash__(self) -> int:
        return hash(self.secret)
