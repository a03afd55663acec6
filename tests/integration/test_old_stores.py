"""A store written by an earlier llmcorr (tests/data/store-f6419c7: a correct, a prompt and a flow run made by commit
f6419c7, before run specs were typed and versioned) still reads, shows, and reruns with this one: its version-1
specs are upgraded as they are read, each into its kind's options model. Its files were recorded at /tmp/oldrun/…
(gone here) and the built-in template at that llmcorr's own path: they are found again or given."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmcorr.runs.batch_plan import BatchSpecOptions
from llmcorr.runs.correct_options import CorrectSpecOptions
from llmcorr.runs.spec import SPEC_VERSION, spec_of
from llmcorr.store import Store

from .conftest import run_cli

OLD = Path(__file__).parents[1] / "data" / "store-f6419c7"


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "old"
    shutil.copytree(OLD, work)
    (work / "home").mkdir()
    shutil.move(work / "llmcorr.db", work / "home" / "llmcorr.db")
    return work, {"LLMCORR_HOME": str(work / "home"), "LLMCORR_STORE": ""}


def test_version_1_specs_load_typed_with_their_options(old: tuple[Path, dict[str, str]]) -> None:
    work, _ = old
    with Store(work / "home" / "llmcorr.db") as store:
        specs = {r.name: spec_of(r) for r in store.list_runs()}
    assert set(specs) == {"old-correct", "old-prompt", "old-flow"}
    assert all(s.version == SPEC_VERSION for s in specs.values())
    correct = specs["old-correct"].options
    assert isinstance(correct, CorrectSpecOptions)
    # version 1 nested the per-row effort under `loop`; the typed options have it flat
    assert (correct.task, correct.shots, correct.limit, correct.format_retries, correct.gate) == (
        "is malignant",
        1,
        2,
        1,
        True,
    )
    assert correct.int_columns == ["label"] and correct.problem == "classification"
    flow = specs["old-flow"].options
    assert isinstance(flow, BatchSpecOptions) and flow.flow_file == "/tmp/oldrun/lengths.py"
    assert isinstance(specs["old-prompt"].options, BatchSpecOptions)


def test_an_old_store_lists_shows_and_reruns_each_kind(old: tuple[Path, dict[str, str]]) -> None:
    work, env = old
    listed = run_cli("runs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in ("old-correct", "old-prompt", "old-flow"))
    shown = run_cli("runs", "show", "old-correct", env=env)
    assert shown.returncode == 0 and "/tmp/oldrun/preds.csv" in shown.stdout, shown.stderr

    reruns = {
        "old-flow": ("--data", work / "words.csv", "--flow", f"{work / 'lengths.py'}:length"),
        "old-prompt": ("--data", work / "words.csv", "--flow", work / "define.prompty"),
        "old-correct": ("--data", work / "preds.csv"),  # its built-in template: this llmcorr's, same hash
    }
    for name, given in reruns.items():
        r = run_cli("runs", "rerun", name, "--name", f"{name}-again", "-q", *given, env=env)
        assert r.returncode == 0, f"{name}: {r.stderr}"
    with Store(work / "home" / "llmcorr.db") as store:
        for name in reruns:
            first, again = store.get_run(name), store.get_run(f"{name}-again")
            assert again.status == "completed" and again.rows_done == first.rows_done
            assert spec_of(again).rerun_of == first.id
            moved_files = {"config", "flow_file"}  # the flow was given from its new place
            assert spec_of(again).options.model_dump(exclude=moved_files) == spec_of(first).options.model_dump(
                exclude=moved_files
            )
