from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import LLMCORR


def run_cli(*args: object, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed `llmcorr` command as a user would, with this test's environment."""
    return subprocess.run(
        [LLMCORR, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def store_path(home: Path) -> Path:
    return home / "llmcorr.db"
