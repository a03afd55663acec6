"""SIGKILL a real `llmcorr run` at seeded random points and resume it each time (bench/kill.py, with 5 kills here;
`python -m bench.kill` does 20): every row once in the store and in the output file, nothing paid for twice but the
rows each kill caught in flight or not yet committed, integrity_check ok after every kill, the run completed and no
run left running."""

from __future__ import annotations

from pathlib import Path

from bench.kill import Setup, kill_and_resume, print_report

KILLS = 5


def test_a_run_killed_five_times_and_resumed_loses_nothing_and_pays_once(tmp_path: Path, llmcorr_home: Path) -> None:
    setup = Setup(rows=240, kills=KILLS, seed=20261127)
    lines: list[str] = []
    report = kill_and_resume(setup, tmp_path / "work", llmcorr_home, say=lines.append)
    print_report(report, lines.append)
    text = "\n".join(lines)
    assert report.problems == [], text
    assert len(report.kills) == KILLS and not report.attempts[-1].killed, text
    # every request beyond one per row is a row some kill lost (in flight or answered, not yet committed) ...
    assert report.paid - setup.rows == sum(len(k.paid_again) for k in report.kills), text
    # ... and the kills did land while requests were in flight: the case this test is for
    assert sum(k.in_flight for k in report.kills) > 0, text
    assert report.prompt_tokens_kept > 0 and report.prompt_tokens_paid >= report.prompt_tokens_kept, text
    assert len(report.commit_lag_ms) >= setup.rows // 2, text  # the finished -> commit lag (checked) was measured
