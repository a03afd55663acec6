"""The store's write path as a run grows: rows + cached answers + two spans per row, committed in batches of 50 the way
the engine commits them, timed in CPU seconds per block of 20,000 rows (the machine's other work hardly matters).

    .venv/bin/python -m bench.store_scale                       # 200,000 rows, SQLite's default page cache
    .venv/bin/python -m bench.store_scale --cache-kib 16384     # a 16 MB page cache instead
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from pathlib import Path

from llmcorr.store import RowRecord, Store

MESSAGES = [
    {"role": "system", "content": "You define words in one sentence."},
    {"role": "user", "content": "Define w."},
]
BATCH = 50
BLOCK = 20_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cache-kib", type=int, default=None, help="PRAGMA cache_size (KiB); default: SQLite's")
    args = parser.parse_args(argv)
    attrs = json.dumps({"llmcorr.span": "llm", "gen_ai.input.messages": json.dumps(MESSAGES), "n": list(range(10))})
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        if args.cache_kib:
            store.conn.execute(f"PRAGMA cache_size = -{args.cache_kib}")
        run_id = store.create_run("prompt", {}, args.rows)
        rates: list[float] = []
        block = time.process_time()
        for start in range(0, args.rows, BATCH):
            rows, spans = [], []
            for i in range(start, start + BATCH):
                key = hashlib.sha256(str(i).encode()).hexdigest()
                store.cached_response([key])
                store.cache_put(key, "m", "ok", 10, 1)
                output = {"output": "ok"}
                rows.append(RowRecord(i, str(i), {"word": f"w{i}"}, "ok", MESSAGES, "ok", output, None, 10, 1))
                for kind in ("row", "llm"):
                    span_id = f"{random.getrandbits(64):016x}"
                    spans.append((span_id, "ab" * 16, None, run_id, i, kind, kind, 1, 2, "ok", None, attrs))
            store.add_rows(run_id, rows)
            store.add_spans(spans)
            if (start + BATCH) % BLOCK == 0:
                now = time.process_time()
                rates.append(BLOCK / (now - block))
                block = now
    cache = f"{args.cache_kib} KiB page cache" if args.cache_kib else "default page cache"
    print(f"\nStore writes per CPU-second, by block of {BLOCK:,} rows ({cache}):\n")
    print("| rows so far | " + " | ".join(f"{(i + 1) * BLOCK // 1000}k" for i in range(len(rates))) + " |")
    print("|---|" + "---:|" * len(rates))
    print("| rows / CPU-s | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    print("\nreproduce: python -m bench.store_scale " + " ".join(argv if argv is not None else []))


if __name__ == "__main__":
    main()
