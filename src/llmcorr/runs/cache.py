"""Content-addressed response cache keys: the same model, messages and sampling parameters give the same key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..providers.base import GenParams, Message


def cache_key(identity: dict[str, Any], messages: list[Message], params: GenParams, sample: int = 0) -> str:
    """sha256 over the model identity, the messages, the sampling parameters and the sample index.

    With temperature > 0 and several samples per prompt, each sample index is its own entry.
    """
    payload = {
        "model": identity,
        "messages": [m.to_dict() for m in messages],
        "params": params.to_dict(),
        "sample": sample,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
