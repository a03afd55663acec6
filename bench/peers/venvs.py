"""The peers' virtualenvs: each tool's packages in its own venv under bench/ (git-ignored), never in llmcorr's.

Prompt flow, LiteLLM and Inspect AI pin different versions of the same dependencies (pip backtracks for minutes
when asked for all three at once), so each gets one. `ensure(key)` creates a missing one with pip, once, and
installs into an existing one whose requirements changed since (its marker file lists those it was made with).
Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
# key -> (folder under bench/, pip requirements): the versions bench/RESULTS.md was measured with
VENVS: dict[str, tuple[str, tuple[str, ...]]] = {
    # promptflow-tools: the llm node's tool (bench/overhead_dag.py); keyrings.alt: a keyring for the connection store
    "promptflow": (".venv-peers", ("promptflow==1.18.5", "promptflow-tools==1.6.1", "keyrings.alt==5.0.2")),
    "litellm": (".venv-peers-litellm", ("litellm==1.110.2",)),
    "inspect": (".venv-peers-inspect", ("inspect-ai==0.3.285", "openai==3.57.0")),
}


def bin_dir(key: str) -> Path:
    return BENCH / VENVS[key][0] / "bin"


def ensure(key: str, install: bool = True) -> str | None:
    """None when the venv is ready; else why not (after trying to create it, if `install`)."""
    folder, requirements = VENVS[key]
    marker = BENCH / folder / ".bench-installed"
    wanted = " ".join(requirements) + "\n"
    if marker.is_file() and marker.read_text() == wanted:
        return None
    if not install:
        return f"not run: bench/{folder} is missing or out of date (run without --no-install to install it)"
    python = bin_dir(key) / "python"
    steps = [[str(python), "-m", "pip", "install", "--quiet", *requirements]]
    if python.is_file():
        print(f"updating bench/{folder}: pip install {' '.join(requirements)}", file=sys.stderr)
    else:
        print(f"creating bench/{folder}: pip install {' '.join(requirements)} (once; a few minutes)", file=sys.stderr)
        venv, pip = [sys.executable, "-m", "venv", str(BENCH / folder)], [str(python), "-m", "pip"]
        steps = [venv, [*pip, "install", "--quiet", "--upgrade", "pip"], *steps]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            return f"not run: `{' '.join(step[-3:])}` failed: {tail[0][:120]}"
    marker.write_text(wanted)
    return None
