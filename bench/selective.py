"""Selective correction: requests sent and metric change with and without it, on the shipped datasets.

For each dataset (breast cancer, diabetes, c-Met) and the embedded model, the same correct run twice: sending every
test row (`selective=False`, the gate applied afterwards) and selecting (the default: validation rows first, then
only the test rows the gate would let a correction through on), and with `--budget N` a third run capped at N
requests. Same rows, seed, shots and validation rows; the response cache off, so every request counted was sent.
The metric is accuracy for classification, RMSE for regression, on every test row (rows not sent keep the base
prediction); "requests" counts every request of the run, validation included.

    .venv/bin/python -m bench.selective                          # 50 test rows a dataset
    .venv/bin/python -m bench.selective --rows 10 --datasets breast_cancer --budget 15
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from llmcorr import Config, Store, correct
from llmcorr.correct.datasets import DATASETS, demo_predictions


def one_run(dataset: str, home: Path, rows: int, shots: int, **options: Any) -> dict[str, Any]:
    """One correct run of `dataset`'s demo predictions; what the table shows of it."""
    info = DATASETS[dataset]
    config = Config(home=home)
    started = time.perf_counter()
    result = correct(
        demo_predictions(dataset, seed=0),  # type: ignore[arg-type]
        task=info["task"],
        shots=shots,
        limit=rows,
        config=config,
        cache=False,
        **options,
    )
    wall = time.perf_counter() - started
    with Store(config.store_path) as store:
        record = store.get_run(result.run_id)
    m = result.metrics
    key = "rmse" if info["problem"] == "regression" else "accuracy"  # multiclass too
    base = getattr(m.base, key) if m.base else None
    corrected = getattr(m.corrected, key) if m.corrected else None
    sent = m.selection.sent if m.selection else len(result.table)
    requests = sum(int(u.get("requests", 0)) for u in (record.usage or {}).values())
    return {
        "key": "accuracy" if key == "accuracy" else "RMSE",
        "base": base,
        "corrected": corrected,
        "requests": requests,
        "sent": sent,
        "n": m.n,
        "gate": m.gate.policy if m.gate else "none",
        "wall": wall,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50, help="test rows a dataset (validation: the default share)")
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--budget", type=int, default=None, help="also a run capped at this many requests")
    args = parser.parse_args(argv)
    modes: list[tuple[str, dict[str, Any]]] = [("send every test row", {"selective": False}), ("selective", {})]
    if args.budget is not None:
        modes.append((f"selective, --budget {args.budget}", {"budget": args.budget}))
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            for mode, options in modes:
                r = one_run(dataset, Path(tmp), args.rows, args.shots, **options)
                change = r["corrected"] - r["base"] if r["corrected"] is not None and r["base"] is not None else None
                shown = f"{r['base']:.4f} → {r['corrected']:.4f} ({change:+.4f})" if change is not None else "n/a"
                lines.append(
                    f"| {dataset} | {mode} | {r['requests']:,} | {r['sent']}/{r['n']} | {r['key']} {shown} "
                    f"| {r['gate']} | {r['wall']:.0f} |"
                )
    print(
        f"\nSelective correction: SmolLM2-135M (embedded), {args.rows} test rows a dataset, k = {args.shots} random "
        f"shots, {os.cpu_count()} cores, response cache off\n"
    )
    print("| dataset | mode | requests (all) | test rows sent | metric: base → corrected (change) | gate | wall s |")
    print("|---|---|---:|---:|---|---|---:|")
    print("\n".join(lines))
    budget = f" --budget {args.budget}" if args.budget is not None else ""
    print(
        f"\nreproduce: .venv/bin/python -m bench.selective --rows {args.rows} --shots {args.shots} "
        f"--datasets {' '.join(args.datasets)}{budget}"
    )


if __name__ == "__main__":
    main()
