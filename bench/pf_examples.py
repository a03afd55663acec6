"""Prompt flow's own example flows, run unchanged by llmcorr (without the promptflow package) and by `pf run`, compared.

The claim checked: Prompt flow's example flows that need only an OpenAI-compatible endpoint run unchanged under
`llmcorr run`, without promptflow installed, with the outputs and metrics `pf run` gives. Both tools ask the instant
server (bench/instant_server.py, "ok" to everything), so the answers, and so the outputs, are deterministic.

    llmcorr run FLOW --data D [--column-mapping k='${data.c}'] [--init init.json] [--run BASE] -o out.jsonl --name N
        then `llmcorr runs show N --json` for the metrics (llmcorr.toml: an endpoint per connection name)
    pf run create --flow FLOW --data D [--column-mapping ...] [--init init.json] [--run BASE] --name N
        then $PF_HOME_DIRECTORY/.runs/N/flow_outputs/output.jsonl and `pf run show-metrics -n N`

Per example, alike means: each row's flow outputs (a failed row has none), the metrics (numbers within 1e-6), the
run's status (completed, failed; llmcorr exits 1 when rows failed, pf 0) and the requests the server answered.
EXAMPLES lists the examples that need no Azure service and no internet, each with the data and column mapping its
README uses, and those left out with the reason. pf runs the flex examples whose init.json is an
AzureOpenAIModelConfiguration with an azure_open_ai connection (the server answers Azure's routes too); llmcorr's
endpoint is the same openai one for all.

    .venv/bin/python -m bench.pf_examples --examples EXAMPLES/flows --flex EXAMPLES/flex-flows
    .venv/bin/python -m bench.pf_examples --from-mirror /work/.mirror/microsoft+promptflow/repo   # extracted first

Prompt flow 1.18.5 runs from bench/.venv-peers (bench/peers/venvs.py, created with pip when missing) or `--pf PATH`.
Exit status 1 when any example that runs differs.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.instant_server import completions_seen, start_instant_server
from bench.peers import venvs
from bench.pf_examples_tools import Llmcorr, Outcome, Promptflow, connection_names, extract, fresh_work, no_promptflow

TOLERANCE = 1e-6


@dataclass(frozen=True)
class Example:
    path: str  # under --examples (standard/..., evaluation/..., chat/...) or, `flex`, under --flex
    data: str = "data.jsonl"  # in the example's folder, or (with a /) under the same root
    mapping: tuple[str, ...] = ()  # column mapping, as its README's `pf run create`
    init: str = ""  # a flex flow's init file, in its folder
    run: str = ""  # the example (path) whose run this one chains on (`--run`)
    flex: bool = False
    pf_connection: str = "open_ai"  # the connection type pf needs: azure_open_ai for AzureOpenAIModelConfiguration
    skip: str = ""  # why it is not run
    chance: str = ""  # why its outputs may differ from run to run (then a difference in them is no finding)

    @property
    def name(self) -> str:
        return ("flex-flows/" if self.flex else "") + self.path + (" (--run)" if self.run else "")

    @property
    def slug(self) -> str:
        return self.path.split("/")[-1].replace("-", "_") + ("_chained" if self.run else "")


def _m(*pairs: str) -> tuple[str, ...]:
    return tuple(f"{k}=${{data.{c}}}" for k, c in (p.split("=") for p in pairs))


AZURE_CONFIG = "azure_open_ai"  # init.json: AzureOpenAIModelConfiguration on open_ai_connection (pf: that type)
EXAMPLES = (
    Example("standard/basic-with-builtin-llm", mapping=_m("text=text")),
    Example(
        "standard/conditional-flow-for-if-else",
        mapping=_m("question=question"),
        chance="content_safety_check.py returns random.choice([True, False])",
    ),
    Example("standard/conditional-flow-for-switch", mapping=_m("query=query")),
    Example("standard/named-entity-recognition", mapping=_m("entity_type=entity_type", "text=text")),
    Example("standard/maths-to-code", "math_data.jsonl", _m("math_question=question")),
    Example("evaluation/eval-classification-accuracy", mapping=_m("groundtruth=groundtruth", "prediction=prediction")),
    Example("evaluation/eval-entity-match-rate", mapping=_m("ground_truth=ground_truth", "entities=entities")),
    Example(
        "evaluation/eval-accuracy-maths-to-code", "test_data.jsonl", _m("groundtruth=groundtruth", "prediction=answer")
    ),
    Example(  # as maths-to-code's README: on its run, the answers as predictions
        "evaluation/eval-accuracy-maths-to-code",
        "standard/maths-to-code/math_data.jsonl",
        ("groundtruth=${data.answer}", "prediction=${run.outputs.answer}"),
        run="standard/maths-to-code",
    ),
    Example("evaluation/eval-basic", mapping=_m("groundtruth=groundtruth", "prediction=prediction")),
    Example("evaluation/eval-chat-math"),
    Example("evaluation/eval-groundedness", mapping=_m("question=question", "answer=answer", "context=context")),
    Example(
        "evaluation/eval-perceived-intelligence", mapping=_m("question=question", "answer=answer", "context=context")
    ),
    Example("chat/chat-math-variant", mapping=_m("question=question")),
    Example("chat-basic", mapping=_m("question=question"), init="init.json", flex=True, pf_connection=AZURE_CONFIG),
    Example("eval-checklist", init="init.json", flex=True, pf_connection=AZURE_CONFIG),
    Example("eval-code-quality", init="init.json", flex=True, pf_connection=AZURE_CONFIG),
    Example("standard/web-classification", skip="fetches web pages (internet) with requests + bs4"),
    Example("standard/flow-with-additional-includes", skip="web-classification's nodes: internet + bs4"),
    Example("standard/basic", skip="its node calls the openai SDK itself, keys from .env via python-dotenv"),
    Example("basic", flex=True, skip="calls the openai SDK itself (Azure OpenAI from env), python-dotenv"),
    Example("chat-minimal", flex=True, skip="python-dotenv; its prompty is azure_openai from env vars"),
    Example("chat-stream", flex=True, skip="stream: true; the instant server does not stream"),
    Example("chat-async-stream", flex=True, skip="stream: true; the instant server does not stream"),
    Example("chat-with-functions", flex=True, skip="no flow.flex.yaml (pf flow test --env on a prompty)"),
    Example("eval-criteria-with-langchain", flex=True, skip="langchain, and a custom connection"),
)
MIRROR_ROOTS = {False: "examples/flows", True: "examples/flex-flows"}


def same(a: Any, b: Any) -> bool:
    """Equal, numbers within TOLERANCE (an int and a float alike), recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Compared:
    example: Example
    rows: str = ""
    llmcorr_exit: str = ""
    pf_exit: str = ""
    outputs: str = ""
    metrics: str = ""
    note: str = ""
    differs: bool = False


def compare(example: Example, n: int, mine: Outcome, theirs: Outcome) -> Compared:
    ok = sum(1 for v in mine.rows.values() if v is not None), len(theirs.rows)
    rows = f"{n}: ok {ok[0]} · {ok[1]}; asked {mine.asked} · {theirs.asked}"
    result = Compared(example, rows, f"{mine.code} ({mine.status})", f"{theirs.code} ({theirs.status})")
    lines = [i for i in range(n) if not same(mine.rows.get(i), theirs.rows.get(i))]
    result.outputs = "yes" if not lines else f"no ({len(lines)} of {n} rows)"
    notes = []
    if len(mine.rows) != n:
        result.outputs = f"no (llmcorr wrote {len(mine.rows)} of {n} rows)"
    elif lines:
        i = lines[0]
        notes.append(f"row {i}: llmcorr {short(mine.rows.get(i))} · pf {short(theirs.rows.get(i))}")
    metrics_equal = same(mine.metrics, theirs.metrics)
    result.metrics = "yes" if metrics_equal else f"no: llmcorr {short(mine.metrics)} · pf {short(theirs.metrics)}"
    result.differs = bool(lines and not example.chance) or len(mine.rows) != n or not metrics_equal
    result.differs = result.differs or mine.status != theirs.status or mine.asked != theirs.asked
    if example.chance:
        notes.insert(0, f"outputs by chance: {example.chance}")
    if result.differs:
        notes += [f"llmcorr: {mine.why}"] * bool(mine.why) + [f"pf: {theirs.why}"] * bool(theirs.why)
    elif theirs.why:
        notes.append(f"both fail rows; pf: {theirs.why}")
    result.note = " · ".join(notes)
    return result


def flow_keys(folder: Path) -> list[str] | None:
    """A DAG flow's output names (its `outputs:`); None for a flex flow (then: every column not in the data)."""
    dag = folder / "flow.dag.yaml"
    return list((yaml.safe_load(dag.read_text()).get("outputs") or {}).keys()) if dag.is_file() else None


def run_example(example: Example, roots: dict[bool, Path], base_url: str, llmcorr: Llmcorr, pf: Promptflow) -> Compared:
    root = roots[example.flex]
    folder = root / example.path
    data = (root / example.data) if "/" in example.data else folder / example.data
    if not (folder / ("flow.flex.yaml" if example.flex else "flow.dag.yaml")).is_file() or not data.is_file():
        return Compared(example, note=f"not run: no flow or data in {folder}")
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    args = ["--data", str(data)]
    if example.init:
        args += ["--init", str(folder / example.init)]
    base = next((e for e in EXAMPLES if e.path == example.run and not e.run), None) if example.run else None
    mine_args, pf_args = [str(folder), *args], ["--flow", str(folder), *args]
    if base is not None:
        mine_args += ["--run", f"llmcorr_{base.slug}"]
        pf_args += ["--run", f"pf_{base.slug}"]
    for pair in example.mapping:
        mine_args += ["--column-mapping", pair]
    pf_args += ["--column-mapping", *example.mapping] if example.mapping else []
    before = completions_seen(base_url)
    mine = llmcorr.run(f"llmcorr_{example.slug}", mine_args, rows, flow_keys(folder))
    pf.connect(example.pf_connection)
    middle = completions_seen(base_url)
    theirs = pf.run(f"pf_{example.slug}", pf_args, example.pf_connection)
    mine.asked, theirs.asked = middle - before, completions_seen(base_url) - middle
    result = compare(example, len(rows), mine, theirs)
    if example.pf_connection != "open_ai":
        result.note = f"pf: {example.pf_connection} connection" + (" · " + result.note if result.note else "")
    return result


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(results: list[Compared], command: str) -> None:
    print("| example | rows: ok llmcorr · pf | llmcorr exit | pf exit | outputs equal | metrics equal | note |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        fields = [r.example.name, r.rows, r.llmcorr_exit, r.pf_exit, r.outputs, r.metrics, r.note]
        if not r.rows:  # not run
            fields = [r.example.name, "—", "—", "—", "—", "—", r.note or f"not run: {r.example.skip}"]
        print("| " + " | ".join(cell(f) for f in fields) + " |")
    ran = [r for r in results if r.rows]
    print(f"\n{sum(not r.differs for r in ran)}/{len(ran)} examples run alike; {len(results) - len(ran)} not run.")
    print(f"reproduce: {command}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=Path, help="a folder laid out like promptflow's examples/flows")
    parser.add_argument("--flex", type=Path, help="a folder laid out like promptflow's examples/flex-flows")
    parser.add_argument("--from-mirror", type=Path, help="a promptflow git repository: the examples taken from it")
    parser.add_argument("--only", nargs="+", default=[], help="only examples whose name contains one of these")
    parser.add_argument("--pf", type=Path, help="the pf executable (default: bench/.venv-peers's)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, logs, outputs)")
    args = parser.parse_args(argv)
    if why := no_promptflow():
        sys.exit(why)
    work = fresh_work(args.keep)
    chosen = [e for e in EXAMPLES if not args.only or any(o in e.name for o in args.only)]
    if args.from_mirror:
        runnable = sorted({f"{MIRROR_ROOTS[e.flex]}/{e.path}" for e in chosen if not e.skip})
        runnable += sorted({f"{MIRROR_ROOTS[False]}/{e.run}" for e in chosen if e.run})
        extract(args.from_mirror, runnable, work / "mirror")
        args.examples, args.flex = work / "mirror" / MIRROR_ROOTS[False], work / "mirror" / MIRROR_ROOTS[True]
    if args.examples is None and args.flex is None:
        parser.error("give --examples and/or --flex, or --from-mirror")
    roots = {False: args.examples, True: args.flex}
    chosen = [e for e in chosen if roots[e.flex] is not None]
    if args.pf is None and (missing := venvs.ensure("promptflow")):
        sys.exit(missing)
    pf_exe = args.pf or venvs.bin_dir("promptflow") / "pf"
    names = {n for e in chosen if not e.skip for n in connection_names(roots[e.flex] / e.path)} or {
        "open_ai_connection"
    }
    server, base_url = start_instant_server()
    try:
        llmcorr, pf = Llmcorr(work, base_url, names), Promptflow(pf_exe, work, base_url, names)
        results = []
        for example in chosen:
            print(f"{example.name} …", file=sys.stderr, flush=True)
            results.append(Compared(example) if example.skip else run_example(example, roots, base_url, llmcorr, pf))
    finally:
        server.terminate()
        server.wait()
    command = shlex.join(["PYTHONPATH=src", ".venv/bin/python", "-m", "bench.pf_examples", *sys.argv[1:]])
    report(results, command)
    if args.keep:
        print(f"work folder: {work}")
    return 1 if any(r.differs for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
