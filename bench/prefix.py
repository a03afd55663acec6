"""Local prefix reuse: rows/s of the embedded model with and without llama.cpp's KV-cache prefix reuse.

With fixed shots (`--knowledge fixed`), every prompt shares its system + knowledge prefix; llmcorr orders rows so
consecutive prompts share the longest prefix, and llama.cpp then evaluates only the part after it. The baseline
clears the KV cache before every request (`LocalProvider(reuse_prefix=False)`). Same rows, same seed, temperature 0,
response cache off; the table says whether the answers were identical.

    .venv/bin/python -m bench.prefix                  # k = 10, 12 rows per mode
    .venv/bin/python -m bench.prefix --shots 3 --rows 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from llmcorr import Config, correct
from llmcorr.correct.datasets import demo_predictions
from llmcorr.providers.local import LocalProvider


def one_mode(
    table: pd.DataFrame, shots: int, rows: int, reuse: bool, knowledge: str, home: Path
) -> tuple[float, list[str], int]:
    """Rows/s, the answers in row order, and the prompt tokens of one mode."""
    config = Config(home=home)
    started = time.perf_counter()
    result = correct(
        table,
        shots=shots,
        knowledge=knowledge,
        limit=rows,
        provider=LocalProvider(reuse_prefix=reuse),
        config=config,
        cache=False,
        gate=False,
        format_retries=0,
    )
    wall = time.perf_counter() - started
    return rows / wall, [str(t) for t in result.table["llm_response"]], result.input_tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--knowledge", default="fixed", help="fixed (shared prefix) or random (little to share)")
    args = parser.parse_args(argv)
    table = demo_predictions("breast_cancer", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        one_mode(table, args.shots, 1, True, args.knowledge, home)  # load the model once, outside the timing
        with_reuse = one_mode(table, args.shots, args.rows, True, args.knowledge, home)
        without = one_mode(table, args.shots, args.rows, False, args.knowledge, home)
    same = with_reuse[1] == without[1]
    print(
        f"\nPrefix reuse: SmolLM2-135M (embedded), breast_cancer, k = {args.shots} {args.knowledge} shots, "
        f"{args.rows} rows per mode, {os.cpu_count()} cores\n"
    )
    print("| mode | rows/s | prompt tokens |")
    print("|---|---:|---:|")
    print(f"| KV-cache prefix reuse (default) | {with_reuse[0]:.2f} | {with_reuse[2]:,} |")
    print(f"| cache cleared before each row | {without[0]:.2f} | {without[2]:,} |")
    print(f"\nspeed-up: {with_reuse[0] / without[0]:.1f}x; identical answers: {'yes' if same else 'no'}")
    print(
        "reproduce: .venv/bin/python -m bench.prefix"
        f" --shots {args.shots} --rows {args.rows} --knowledge {args.knowledge}"
    )


if __name__ == "__main__":
    main()
