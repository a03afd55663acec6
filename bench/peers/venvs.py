"""The peers' virtualenvs: each tool's packages in its own venv under bench/ (git-ignored), never in llmcorr's.

Prompt flow, LiteLLM and Inspect AI pin different versions of the same dependencies (pip backtracks for minutes
when asked for all three at once), so each gets one. `ensure(key)` creates a missing one with pip, once.
Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
# key -> (folder under bench/, pip requirements): the versions bench/RESULTS.md was measured with
VENVS: dict[str, tuple[str, tuple[str, ...]]] = {
    "promptflow": (".venv-peers", ("promptflow==1.18.5",)),
    "litellm": (".venv-peers-litellm", ("litellm==1.110.2",)),
    "inspect": (".venv-peers-inspect", ("inspect-ai==0.3.285", "openai==3.57.0")),
}


def bin_dir(key: str) -> Path:
    return BENCH / VENVS[key][0] / "bin"


def ensure(key: str, install: bool = True) -> str | None:
    """None when the venv is ready; else why not (after trying to create it, if `install`)."""
    folder, requirements = VENVS[key]
    marker = BENCH / folder / ".bench-installed"
    if marker.is_file():
        return None
    if not install:
        return f"not run: bench/{folder} is missing (run without --no-install to create it)"
    print(f"creating bench/{folder}: pip install {' '.join(requirements)} (once; a few minutes)", file=sys.stderr)
    python = bin_dir(key) / "python"
    steps = [
        [sys.executable, "-m", "venv", str(BENCH / folder)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            return f"not run: `{' '.join(step[-3:])}` failed: {tail[0][:120]}"
    marker.write_text(" ".join(requirements) + "\n")
    return None
