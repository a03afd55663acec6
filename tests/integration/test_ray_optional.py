"""Ray is an optional extra: `import llmcorr` never imports it, and without it `--executor ray` is one line with exit
code 2, before any run is recorded. (These run whether or not Ray is installed; a stub hides it.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from .conftest import run_cli, store_path

PROMPTY = """---
name: Echo
---
user:
Say {{ word }}
"""


def test_import_llmcorr_never_imports_ray() -> None:
    code = "import sys, llmcorr, llmcorr.cli, llmcorr.runs.batch; print('ray' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_executor_ray_without_ray_is_one_line_exit_2(tmp_path: Path, llmcorr_home: Path) -> None:
    hidden = tmp_path / "no-ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    (tmp_path / "echo.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": ["a", "b"]}).to_csv(tmp_path / "d.csv", index=False)
    args = ("run", tmp_path / "echo.prompty", "--data", tmp_path / "d.csv")

    r = run_cli(*args, "--executor", "ray", env={"PYTHONPATH": str(hidden.parent)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray, which is not installed: pip install 'llmcorr[ray]'"
    ]

    bad = run_cli(*args, "--executor", "dask")
    assert bad.returncode == 2 and "expected one of local, ray" in bad.stderr and "Traceback" not in bad.stderr
    assert not store_path(llmcorr_home).exists()  # nothing was recorded
