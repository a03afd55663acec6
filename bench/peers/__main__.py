"""python -m bench.peers MODULE  — run one peer runner: the work as JSON on stdin, the result on stdout's last line.

stdin: {"base_urls": [...], "scenario": {...}} (see bench/peers/common.py); stdout's last line: RESULT_MARK + JSON.
"""

from __future__ import annotations

import importlib
import json
import sys

RESULT_MARK = "BENCH-RESULT "
RUNNERS = ("llmcorr_runner", "paper_loop", "promptflow_runner", "litellm_runner", "inspect_runner")


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in RUNNERS:
        sys.exit(f"usage: python -m bench.peers {{{','.join(RUNNERS)}}} < work.json")
    work = json.load(sys.stdin)
    module = importlib.import_module(f"bench.peers.{argv[0]}")
    result = module.run(work["base_urls"], work["scenario"])
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
