"""API keys: from the environment, or from a secrets file; and scrubbing them from text a server sends back.

The secrets file is `$LLMCORR_HOME/secrets.env` (default `~/.llmcorr/secrets.env`), or the file `LLMCORR_SECRETS`
names. It holds `NAME=value` lines (blank lines, `# comments`, a leading `export ` and quotes around a value are
allowed) and stands in for environment variables of those names wherever a key is named: `api_key =
"${env:NAME}"` in llmcorr.toml, `--api-key-env NAME`. The environment wins when both set a name (an empty variable
counts as unset). The file is read only when a key is not in the environment, and only if it is private: a regular
file owned by the user running llmcorr, with no permission for group or others (mode 0600 or 0400); anything else
stops the command with one line naming the file and the fix. Values are held in memory, never copied into
`os.environ` (a run the dashboard starts reads the file itself), never logged, never echoed in an error.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .locations import default_home

SECRETS_ENV = "LLMCORR_SECRETS"
SECRETS_FILE = "secrets.env"
MIN_SCRUBBED = 4  # a key shorter than this is not scrubbed from text (it would mangle every message)
REDACTED = "[REDACTED]"

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_INLINE_COMMENT = re.compile(r"\s+#.*$")
# what OpenAI-style keys look like (sk-…, sk-proj-…, sk-ant-…), whole or masked with *, as servers echo them
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*-]{16,}")

_cache: dict[Path, tuple[tuple[int, int, int, int], dict[str, str]]] = {}
_lock = threading.Lock()
_remembered: set[str] = set()  # values read from the environment into prompts (`--allow-env`): scrubbed like keys


def secrets_path() -> Path:
    """The secrets file: `LLMCORR_SECRETS`, else secrets.env in llmcorr's home."""
    given = os.environ.get(SECRETS_ENV)
    return Path(given).expanduser() if given else default_home() / SECRETS_FILE


def key_value(name: str) -> str | None:
    """The key in variable `name`: the environment's, else the secrets file's, else None."""
    return os.environ.get(name) or read_secrets().get(name) or None


def read_secrets(path: Path | None = None) -> dict[str, str]:
    """The secrets file's names and values ({} when the default file does not exist); read again when it changes."""
    named = path is not None or bool(os.environ.get(SECRETS_ENV))
    path = path or secrets_path()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{path}: no such secrets file ({SECRETS_ENV} names it)") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    _check_private(path, info)
    stamp = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
    with _lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    values = parse_secrets(raw, path)
    with _lock:
        _cache[path] = (stamp, values)
    return values


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: the secrets file is not a regular file")
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: no POSIX owner or mode bits to check
        return
    if info.st_uid != getuid():
        raise ConfigError(
            f"{path}: the secrets file belongs to another user (uid {info.st_uid}); keep your own copy, then "
            f"chmod 600 {path}"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path}: the secrets file may be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"make it private: chmod 600 {path}"
        )


def parse_secrets(raw: bytes, path: Path | str = SECRETS_FILE) -> dict[str, str]:
    """`NAME=value` lines → {NAME: value}. A bad line is one ConfigError naming file:line, never its text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the secrets file is not UTF-8 text") from None
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None:  # the line itself is never shown: it may be a key pasted without its name
            raise ConfigError(f"{path}:{n}: expected NAME=value (a name of letters, digits and _)")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = _INLINE_COMMENT.sub("", value)
        if name in values:
            raise ConfigError(f"{path}:{n}: {name} is set twice")
        values[name] = value
    return values


def check_key_text(name: str, value: str) -> None:
    """A key a request header can carry: a CR, LF or other control character (a key pasted with its line end) is
    one ConfigError naming the variable, never the key, instead of a traceback from the HTTP client."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            f"the API key in {name} holds a line break or another control character; set it again without one "
            "(the key is not shown)"
        )


def remember_secret(value: str) -> None:
    """Scrub `value` from what is stored and traced from now on, as a key is (`scrub`, `redact`)."""
    if len(value) >= MIN_SCRUBBED:
        with _lock:
            _remembered.add(value)
            _remembered.add(json.dumps(value)[1:-1])  # as it appears inside JSON text (escaped quotes, non-ASCII)


def scrub(text: str) -> str:
    """`text` without the values `remember_secret` was given (longest first, so none leaves a part behind)."""
    if not _remembered:
        return text
    with _lock:
        values = sorted(_remembered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub_all(value: Any) -> Any:
    """`value` (text, or lists and mappings of it: a prompt's messages) with every string `scrub`bed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [scrub_all(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub_all(v) for k, v in value.items()}
    return value


def redact(text: str, *keys: str | None) -> str:
    """`text` without the given keys, the remembered secrets and anything shaped like an OpenAI-style key
    (`sk-…`)."""
    text = scrub(text)
    for key in keys:
        if key and len(key) >= MIN_SCRUBBED and key in text:
            text = text.replace(key, REDACTED)
    return _KEY_LIKE.sub(REDACTED, text)
