"""Prompt flow DAG flows (llmcorr/pf): flow.dag.yaml loaded into typed data, checked at load time, and run per row
and per aggregation with Prompt flow's activate/bypass rules.

The semantics asserted here were read in microsoft/promptflow, promptflow-core: `contracts/flow.py` (the file's
shapes, `InputAssignment.deserialize`), `executor/_dag_manager.py` (`DAGManager`: readiness, bypass, bypassed
inputs), `executor/_async_nodes_scheduler.py` (start as soon as ready), `executor/flow_validator.py` (load-time rules),
`executor/flow_executor.py` (`_exec_aggregation`, `_extract_outputs`); promptflow-devkit `_orchestrator/utils.py`
(`overwrite_variant`). The flows are shaped like pf's examples/flows (web-classification, conditional-flow-for-switch,
eval-classification-accuracy, chat-math-variant). No node runs a model: `run_node` is a fake that records events.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from llmcorr.errors import DataError, UserError
from llmcorr.pf import (
    Const,
    DagFlow,
    Node,
    NodeInputs,
    NodeType,
    Reference,
    RowResult,
    flow_inputs,
    load_dag,
    override_nodes,
    parse_value,
    run_aggregation,
    run_row,
    select_variant,
)
from llmcorr.pf.refs import PathError, follow


def write_flow(folder: Path, text: str, files: Iterable[str] = ()) -> Path:
    """A flow folder: flow.dag.yaml with `text`, and an empty file for each of `files` (node sources)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.dag.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("", encoding="utf-8")
    return folder


WEB_CLASSIFICATION = """
    $schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
    environment:
      python_requirements_txt: requirements.txt
    inputs:
      url:
        type: string
        default: https://example.com/app
        description: the page to classify
      max_chars:
        type: int
        default: 2000
    outputs:
      category:
        type: string
        reference: ${convert_to_dict.output.category}
      evidence:
        type: string
        reference: ${convert_to_dict.output.evidence}
    nodes:
    - name: convert_to_dict
      type: python
      source: {type: code, path: convert_to_dict.py}
      inputs:
        input_str: ${classify_with_llm.output}
    - name: fetch_text_content_from_url
      type: python
      source: {type: code, path: fetch_text_content_from_url.py}
      inputs:
        url: ${inputs.url}
        limit: ${inputs.max_chars}
    - name: summarize_text_content
      use_variants: true
    - name: prepare_examples
      type: python
      source: {type: code, path: prepare_examples.py}
      inputs: {}
    - name: classify_prompt
      type: prompt
      source: {type: code, path: classify.jinja2}
      inputs:
        url: ${inputs.url}
        text_content: ${summarize_text_content.output}
        examples: ${prepare_examples.output}
    - name: classify_with_llm
      type: llm
      source: {type: code, path: classify_with_llm.jinja2}
      inputs:
        deployment_name: gpt-35-turbo
        max_tokens: 128
        temperature: 0.2
        prompt: ${classify_prompt.output}
      connection: open_ai_connection
      api: chat
    node_variants:
      summarize_text_content:
        default_variant_id: variant_0
        variants:
          variant_0:
            node:
              type: llm
              source: {type: code, path: summarize_text_content.jinja2}
              inputs:
                max_tokens: 128
                text: ${fetch_text_content_from_url.output}
              connection: open_ai_connection
              api: chat
          variant_1:
            description: longer summaries
            node:
              type: llm
              source: {type: code, path: summarize_text_content__variant_1.jinja2}
              inputs:
                max_tokens: 256
                text: ${fetch_text_content_from_url.output}
              connection: open_ai_connection
              api: chat
"""
WEB_FILES = (
    "convert_to_dict.py",
    "fetch_text_content_from_url.py",
    "prepare_examples.py",
    "classify.jinja2",
    "classify_with_llm.jinja2",
    "summarize_text_content.jinja2",
    "summarize_text_content__variant_1.jinja2",
)


def test_a_realistic_flow_loads_into_typed_nodes_in_run_order(tmp_path: Path) -> None:
    folder = write_flow(tmp_path / "web", WEB_CLASSIFICATION, WEB_FILES)
    flow = load_dag(folder)
    assert flow.file == (folder / "flow.dag.yaml").resolve()
    assert flow.name == "web"
    assert flow.inputs["url"].default == "https://example.com/app"
    assert flow.inputs["url"].description == "the page to classify"
    assert flow.inputs["max_chars"].type == "int"
    # declared first, convert_to_dict reads the last node: it runs last; the others keep their declared order
    assert [n.name for n in flow.nodes] == [
        "fetch_text_content_from_url",
        "summarize_text_content",
        "prepare_examples",
        "classify_prompt",
        "classify_with_llm",
        "convert_to_dict",
    ]
    assert flow.declared[0].name == "convert_to_dict"
    llm = flow.node("classify_with_llm")
    assert llm.type == NodeType.LLM and llm.connection == "open_ai_connection" and llm.api == "chat"
    assert llm.inputs["max_tokens"] == Const(value=128)
    assert llm.inputs["temperature"] == Const(value=0.2)
    assert llm.inputs["prompt"] == Reference(source="node", name="classify_prompt")
    assert flow.node("classify_prompt").type == NodeType.PROMPT
    assert flow.source_file(flow.node("convert_to_dict")) == (folder / "convert_to_dict.py").resolve()
    fetch = flow.node("fetch_text_content_from_url")
    assert fetch.inputs["url"] == Reference(source="inputs", name="url")
    category = flow.outputs["category"].reference
    assert isinstance(category, Reference)
    assert (category.name, category.path, category.key) == (
        "convert_to_dict",
        ("category",),
        "${convert_to_dict.output.category}",
    )
    # the use_variants node is its default variant, name kept (pf: `Flow._apply_default_node_variant`)
    summarize = flow.node("summarize_text_content")
    assert (summarize.variant, summarize.type, summarize.source and summarize.source.path) == (
        "variant_0",
        NodeType.LLM,
        "summarize_text_content.jinja2",
    )
    assert flow.node_variants["summarize_text_content"].variants["variant_1"].description == "longer summaries"
    assert flow.unsupported == () and flow.variant is None


def test_a_variant_is_selected_as_pf_run_variant_does(tmp_path: Path) -> None:
    flow = load_dag(write_flow(tmp_path / "web", WEB_CLASSIFICATION, WEB_FILES))
    chosen = select_variant(flow, "${summarize_text_content.variant_1}")
    node = chosen.node("summarize_text_content")
    assert node.variant == "variant_1"
    assert node.source is not None and node.source.path == "summarize_text_content__variant_1.jinja2"
    assert node.inputs["max_tokens"] == Const(value=256)
    assert chosen.variant == "${summarize_text_content.variant_1}"
    assert flow.node("summarize_text_content").variant == "variant_0"  # the original is unchanged
    with pytest.raises(UserError, match=r"flow has no node 'summarize' \(nodes: convert_to_dict, "):
        select_variant(flow, "${summarize.variant_1}")
    with pytest.raises(UserError, match=r"node 'summarize_text_content': no variant 'variant_9' \(variants: "):
        select_variant(flow, "${summarize_text_content.variant_9}")
    with pytest.raises(UserError, match="node 'prepare_examples': has no variants to select"):
        select_variant(flow, "${prepare_examples.variant_1}")
    with pytest.raises(UserError, match=r"expected \$\{NODE.VARIANT_ID\}"):
        select_variant(flow, "summarize_text_content.variant_1")


def test_node_overrides_as_a_pf_runs_connections(tmp_path: Path) -> None:
    flow = load_dag(write_flow(tmp_path / "web", WEB_CLASSIFICATION, WEB_FILES))
    changed = override_nodes(
        flow,
        {
            "classify_with_llm.connection": "azure",  # an llm node: its connection
            "classify_with_llm.deployment_name": "gpt-4o",  # any other key: an input's literal value
            "convert_to_dict.connection": "db",  # a python node's `connection` is an input too, as in pf
        },
    )
    llm = changed.node("classify_with_llm")
    assert llm.connection == "azure" and llm.inputs["deployment_name"] == Const(value="gpt-4o")
    assert llm.inputs["max_tokens"] == Const(value=128)  # the rest as written
    assert changed.node("convert_to_dict").inputs["connection"] == Const(value="db")
    assert flow.node("classify_with_llm").connection == "open_ai_connection"  # the original is unchanged
    assert [n.name for n in changed.nodes] == [n.name for n in flow.nodes] and override_nodes(flow, {}) is flow
    with pytest.raises(UserError, match=r"override 'classify.connection': the flow has no node 'classify' \(nodes: "):
        override_nodes(flow, {"classify.connection": "x"})
    for bad in ("connection", "a.b.c", ".connection"):
        with pytest.raises(UserError, match=rf"override '{re.escape(bad)}': expected NODE.KEY"):
            override_nodes(flow, {bad: "x"})


def test_sources_are_found_through_additional_includes(tmp_path: Path) -> None:
    write_flow(tmp_path / "shared", "inputs: {}\n", ["grade.py", "lib/helpers.py"])
    flow_text = """
        inputs: {x: {type: string}}
        outputs: {y: {type: string, reference: '${a.output}'}}
        additional_includes: [../shared/grade.py, ../shared/lib]
        nodes:
        - {name: a, type: python, source: {type: code, path: grade.py}, inputs: {x: '${inputs.x}'}}
        - {name: b, type: python, source: {type: code, path: lib/helpers.py}, inputs: {x: '${a.output}'}}
        """
    flow = load_dag(write_flow(tmp_path / "flow", flow_text) / "flow.dag.yaml")
    assert flow.additional_includes == ("../shared/grade.py", "../shared/lib")
    assert flow.source_file(flow.node("a")) == (tmp_path / "shared" / "grade.py").resolve()
    assert flow.source_file(flow.node("b")) == (tmp_path / "shared" / "lib" / "helpers.py").resolve()


def test_nodes_llmcorr_cannot_run_load_and_are_listed(tmp_path: Path) -> None:
    flow_text = """
        inputs: {q: {type: string}}
        outputs: {a: {type: string, reference: '${search.output}'}}
        nodes:
        - name: search
          type: python
          source: {type: package, tool: promptflow.tools.serpapi.SerpAPI.search}
          inputs: {query: '${inputs.q}'}
        - {name: cs, type: csharp, source: {type: code, path: Tool.cs}, inputs: {q: '${inputs.q}'}}
        """
    flow = load_dag(write_flow(tmp_path / "f", flow_text))
    assert [n.name for n in flow.unsupported] == ["search", "cs"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("${inputs.question}", Reference(source="inputs", name="question")),
        ("${flow.question}", Reference(source="inputs", name="question")),  # pf's older prefix
        ("${classify}", Reference(source="node", name="classify")),
        ("${classify.output}", Reference(source="node", name="classify")),
        ("${n.output.a.b}", Reference(source="node", name="n", subpath="a.b", path=("a", "b"))),
        (
            "${n.output.hits[0]['page title']}",
            Reference(source="node", name="n", subpath="hits[0]['page title']", path=("hits", 0, "page title")),
        ),
        ("Answer ${inputs.q} briefly", Const(value="Answer ${inputs.q} briefly")),  # only a whole ${...}
        ("$notref", Const(value="$notref")),
        (128, Const(value=128)),
        (["${inputs.q}"], Const(value=["${inputs.q}"])),  # pf does not look inside lists
    ],
)
def test_values_parse_as_prompt_flow_reads_them(raw: Any, expected: Const | Reference) -> None:
    assert parse_value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("${}", "empty reference"),
        ("${n.outputs}", r"expected \$\{n.output\} or \$\{n.output.KEY\}"),
        ("${n.output.a..b}", "cannot read the property path 'a..b'"),
        ("${n.output..a}", "cannot read the property path '.a'"),
        ("${n.output.a[x]}", r"cannot read the property path 'a\[x\]'"),
    ],
)
def test_malformed_references_are_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_value(raw)


def test_a_path_follows_keys_attributes_and_indexes() -> None:
    class Answer:
        label = "spam"

    assert follow({"a": {"b": [10, 20]}}, ("a", "b", 1)) == 20
    assert follow({"x": Answer()}, ("x", "label")) == "spam"
    with pytest.raises(PathError, match=r"has no 'c' \(it is a dict with keys 'a'\)"):
        follow({"a": 1}, ("c",))
    with pytest.raises(PathError, match=r"has no \[5\] \(it is a list of 2\)"):
        follow([1, 2], (5,))


SIMPLE_NODE = "{name: a, type: python, source: {type: code, path: a.py}, inputs: {x: '${inputs.x}'}}"


@pytest.mark.parametrize(
    ("nodes", "extra", "message"),
    [
        (
            [SIMPLE_NODE, "{name: b, type: python, source: {type: code, path: a.py}, inputs: {v: '${zz.output}'}}"],
            "",
            r"node 'b': input 'v' reads \$\{zz.output\}, but the flow has no node 'zz'",
        ),
        (
            ["{name: a, type: python, source: {type: code, path: a.py}, inputs: {x: '${inputs.nope}'}}"],
            "",
            r"node 'a': input 'x' reads \$\{inputs.nope\}, but the flow declares no input 'nope' \(inputs: x\)",
        ),
        (
            [
                "{name: a, type: python, source: {type: code, path: a.py}, inputs: {v: '${c.output}'}}",
                "{name: b, type: python, source: {type: code, path: a.py}, inputs: {v: '${a.output}'}}",
                "{name: c, type: python, source: {type: code, path: a.py}, inputs: {v: '${b.output.k}'}}",
            ],
            "",
            "node 'a': its references form a cycle: a → c → b → a",
        ),
        (
            ["{name: a, type: python, source: {type: code, path: a.py}, inputs: {v: '${a.output}'}}"],
            "",
            "node 'a': its references form a cycle: a → a",
        ),
        ([SIMPLE_NODE, SIMPLE_NODE], "", "node 'a': the name appears twice in nodes"),
        (
            [
                SIMPLE_NODE,
                "{name: agg, type: python, source: {type: code, path: a.py}, inputs: {v: '${a.output}'}, "
                "aggregation: true}",
                "{name: c, type: python, source: {type: code, path: a.py}, inputs: {v: '${agg.output}'}}",
            ],
            "",
            "node 'c': input 'v' reads aggregation node 'agg', which runs once after all rows",
        ),
        (
            [
                SIMPLE_NODE,
                "{name: agg, type: python, source: {type: code, path: a.py}, inputs: {v: '${a.output}'}, "
                "reduce: true, activate: {when: '${a.output}', is: 1}}",
            ],
            "",
            "node 'agg': activate when reads per-row node 'a'; an aggregation node's condition",
        ),
        (
            ["{name: a, type: pyhton, source: {type: code, path: a.py}}"],
            "",
            "node 'a': type: Input should be 'python', 'prompt', 'llm'",
        ),
        (
            ["{name: a, type: python, source: {type: code, path: a.py}, activte: {when: '${inputs.x}', is: 1}}"],
            "",
            "node 'a': unknown key 'activte' \\(expected: activate, aggregation, ",
        ),
        (
            ["{name: a, type: python, source: {type: code, path: a.py}, activate: {when: '${inputs.x}'}}"],
            "",
            "node 'a' activate: expected both when and is",
        ),
        (
            ["{name: a, type: python, source: {type: code, path: missing.py}}"],
            "",
            "node 'a': source 'missing.py' not found in ",
        ),
        (["{name: a, type: python, inputs: {}}"], "", r"node 'a': expected source: \{type: code, path: FILE\}"),
        (["{type: python, source: {type: code, path: a.py}}"], "", r"nodes\[0\]: expected a name"),
        (
            ["{name: a, type: python, source: {type: code, path: a.py}, inputs: {v: '${a.outputs}'}}"],
            "",
            r"node 'a' input 'v': '\$\{a.outputs\}': expected \$\{a.output\}",
        ),
        ([SIMPLE_NODE], "outputs: {y: {type: str, reference: '${a.output}'}}", "output 'y': type: Input should be"),
        ([SIMPLE_NODE], "outputs: {y: {type: string}}", r"output 'y': expected a reference, e.g. reference:"),
        (
            [SIMPLE_NODE],
            "outputs: {y: {type: string, reference: '${b.output}'}}",
            r"output 'y': reads \$\{b.output\}, but the flow has no node 'b'",
        ),
        (["{name: s, use_variants: true}"], "", "node 's': use_variants is true but node_variants has none for it"),
        (
            ["{name: s, use_variants: true}"],
            "node_variants: {s: {variants: {v0: {node: {type: python, source: {type: code, path: a.py}}}}}}",
            "node_variants 's': expected default_variant_id",
        ),
        ([SIMPLE_NODE], "tools: []", "the file: unknown key 'tools'"),
    ],
)
def test_each_mistake_is_one_line_naming_the_file_and_node(
    tmp_path: Path, nodes: list[str], extra: str, message: str
) -> None:
    lines = ["inputs: {x: {type: string}}", "nodes:", *[f"- {node}" for node in nodes]]
    if extra:
        lines.append(extra)
    else:
        lines.append("outputs: {}")
    folder = write_flow(tmp_path / "bad", "\n".join(lines) + "\n", ["a.py"])
    with pytest.raises(UserError, match=message) as caught:
        load_dag(folder)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{(folder / 'flow.dag.yaml').resolve()}: ")  # tmp_path is not under the working folder


def test_file_level_mistakes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such flow file or folder"):
        load_dag(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no flow\.dag\.yaml in this folder"):
        load_dag(tmp_path / "empty")
    write_flow(tmp_path / "yaml", "inputs:\n  x: [unclosed\nnodes: []\n")
    with pytest.raises(UserError, match=r"\.yaml: not valid YAML: expected ',' or '\]'.* at line 3, column 6$"):
        load_dag(tmp_path / "yaml")
    write_flow(tmp_path / "list", "- just\n- a list\n")
    with pytest.raises(UserError, match="the file: expected a mapping with inputs, outputs and nodes, found list"):
        load_dag(tmp_path / "list")
    write_flow(tmp_path / "type", "inputs: {x: {type: strin}}\nnodes: []\n")
    with pytest.raises(UserError, match="input 'x': type: Input should be 'string', 'int'"):
        load_dag(tmp_path / "type")


# --- running a row -----------------------------------------------------------------------------------------------


class Recorder:
    """A fake `run_node`: records `start NAME` / `end NAME` events and each node's inputs; each node's answer is
    `answers[name]` (a value, or a function of the inputs' values), awaiting `gates[name]` first if there is one."""

    def __init__(self, answers: dict[str, Any], gates: dict[str, asyncio.Event] | None = None) -> None:
        self.answers = answers
        self.gates = gates or {}
        self.events: list[str] = []
        self.inputs: dict[str, NodeInputs] = {}
        self.on_start: dict[str, asyncio.Event] = {}

    async def __call__(self, node: Node, inputs: NodeInputs) -> Any:
        self.events.append(f"start {node.name}")
        self.inputs[node.name] = inputs
        self.on_start.setdefault(node.name, asyncio.Event()).set()
        if node.name in self.gates:
            await asyncio.wait_for(self.gates[node.name].wait(), timeout=5)  # fails, never hangs, if not concurrent
        await asyncio.sleep(0)
        answer = self.answers[node.name]
        self.events.append(f"end {node.name}")
        return answer(inputs.values) if callable(answer) else answer


def py(name: str, inputs: str, extra: str = "") -> str:
    return f"- {{name: {name}, type: python, source: {{type: code, path: n.py}}, inputs: {{{inputs}}}{extra}}}\n"


def flow_of(tmp_path: Path, inputs: str, outputs: str, nodes: str) -> DagFlow:
    text = f"inputs: {{{inputs}}}\noutputs: {{{outputs}}}\nnodes:\n{nodes}"
    return load_dag(write_flow(tmp_path / "flow", text, ["n.py"]))


def test_independent_nodes_run_at_once_and_each_starts_when_its_own_inputs_are_done(tmp_path: Path) -> None:
    # slow reads x; fast reads x; after_fast reads only fast; join reads slow and after_fast
    nodes = (
        py("slow", "x: '${inputs.x}'")
        + py("fast", "x: '${inputs.x}'")
        + py("after_fast", "v: '${fast.output}'")
        + py("join", "a: '${slow.output}', b: '${after_fast.output}'")
    )
    flow = flow_of(tmp_path, "x: {type: string}", "out: {type: string, reference: '${join.output}'}", nodes)
    release_slow = asyncio.Event()

    async def main() -> tuple[RowResult, Recorder]:
        recorder = Recorder(
            {"slow": "S", "fast": "F", "after_fast": lambda v: v["v"] + "!", "join": lambda v: v["a"] + v["b"]},
            gates={"slow": release_slow},
        )

        async def release_when_after_fast_started() -> None:
            await recorder.on_start.setdefault("after_fast", asyncio.Event()).wait()
            release_slow.set()

        releaser = asyncio.create_task(release_when_after_fast_started())
        row = await run_row(flow, {"x": "q"}, recorder)
        await releaser
        return row, recorder

    row, recorder = asyncio.run(main())
    events = recorder.events
    # slow is held until after_fast starts: the row completes only if after_fast did not wait for slow
    assert events.index("start after_fast") < events.index("end slow")
    assert events[:2] == ["start slow", "start fast"]  # both start before either ends
    assert events.index("start join") > max(events.index("end slow"), events.index("end after_fast"))
    assert row.outputs == {"out": "SF!"}
    assert row.bypassed == ()


def test_max_concurrency_one_runs_nodes_one_after_another(tmp_path: Path) -> None:
    nodes = py("a", "x: '${inputs.x}'") + py("b", "x: '${inputs.x}'") + py("c", "x: '${inputs.x}'")
    flow = flow_of(tmp_path, "x: {type: string}", "", nodes)
    recorder = Recorder({"a": 1, "b": 2, "c": 3})
    asyncio.run(run_row(flow, {"x": "q"}, recorder, max_concurrency=1))
    assert recorder.events == ["start a", "end a", "start b", "end b", "start c", "end c"]


SWITCH = (  # pf examples/flows/standard/conditional-flow-for-switch
    py("classify", "query: '${inputs.query}'")
    + py("order_search", "query: '${inputs.query}'", ", activate: {when: '${classify.output}', is: order_search}")
    + py("product_info", "query: '${inputs.query}'", ", activate: {when: '${classify.output}', is: product_info}")
    + py("product_rec", "query: '${inputs.query}'", ", activate: {when: '${classify.output}', is: product_rec}")
    + py("respond", "order: '${order_search.output}', info: '${product_info.output}', rec: '${product_rec.output}'")
)


def test_activate_runs_the_matching_branch_and_bypassed_inputs_are_none(tmp_path: Path) -> None:
    flow = flow_of(
        tmp_path,
        "query: {type: string}",
        "response: {type: string, reference: '${respond.output}'}, order: {type: string, "
        "reference: '${order_search.output}'}",
        SWITCH,
    )
    recorder = Recorder(
        {"classify": "product_info", "product_info": "it is red", "respond": lambda v: f"{v['info']}|{v['order']}"}
    )
    row = asyncio.run(run_row(flow, {"query": "what color?"}, recorder))
    assert row.bypassed == ("order_search", "product_rec")
    assert "start order_search" not in recorder.events and "start product_rec" not in recorder.events
    # DAGManager._is_node_bypassable: respond has no activate and not all of its nodes were bypassed, so it runs
    respond = recorder.inputs["respond"]
    assert respond.values == {"order": None, "info": "it is red", "rec": None}
    assert respond.bypassed == {"order", "rec"}
    assert row.outputs == {"response": "it is red|None", "order": None}


BYPASS_CHAIN = (
    py("gate", "x: '${inputs.x}'", ", activate: {when: '${inputs.mode}', is: go}")
    + py("after_gate", "v: '${gate.output}'")  # reads only a bypassed node: bypassed too
    + py("after_that", "v: '${after_gate.output}', x: '${inputs.x}'")  # flow inputs do not count: bypassed
    + py("own_condition", "v: '${gate.output}'", ", activate: {when: '${inputs.x}', is: hello}")
    + py("when_bypassed", "x: '${inputs.x}'", ", activate: {when: '${gate.output}', is: null}")
    + py("plain", "x: '${inputs.x}'")
)


def test_bypass_propagates_exactly_as_in_prompt_flow(tmp_path: Path) -> None:
    flow = flow_of(
        tmp_path,
        "x: {type: string}, mode: {type: string, default: stop}",
        "last: {type: object, reference: '${after_that.output.key}'}, p: {type: string, reference: '${plain.output}'}",
        BYPASS_CHAIN,
    )
    recorder = Recorder({"own_condition": "ran", "plain": "P"})
    row = asyncio.run(run_row(flow, {"x": "hello"}, recorder))
    # _dag_manager.py DAGManager._is_node_bypassable:
    # - gate: its condition ${inputs.mode} == "stop" is not "go"
    # - after_gate, after_that: every *node* they read was bypassed (after_that also reads a flow input)
    # - when_bypassed: its condition reads a bypassed node, so it is bypassed even though None == `is: null`
    assert set(row.bypassed) == {"gate", "after_gate", "after_that", "when_bypassed"}
    assert row.bypassed.index("gate") < row.bypassed.index("after_gate") < row.bypassed.index("after_that")
    # - own_condition reads only a bypassed node, but has an activate config that is met: "if a node has activate
    #   config, we will always use this config" — it runs, with None for the bypassed input
    assert "start own_condition" in recorder.events
    assert recorder.inputs["own_condition"].values == {"v": None}
    assert row.outputs == {"last": None, "p": "P"}  # a bypassed node's output is None, whatever the path

    names = ["gate", "after_gate", "after_that", "own_condition", "when_bypassed", "plain"]
    met = asyncio.run(run_row(flow, {"x": "hello", "mode": "go"}, Recorder({name: {"key": "K"} for name in names})))
    # gate ran, so when_bypassed's condition is {"key": "K"} == None: not met
    assert met.bypassed == ("when_bypassed",)
    assert met.outputs["last"] == "K"


def test_a_bypassed_input_is_left_out_where_the_function_has_a_default() -> None:
    inputs = NodeInputs({"order": None, "info": "red", "rec": None}, frozenset({"order", "rec"}))

    def respond(info: str, order: str = "none found", rec: str | None = None, **rest: Any) -> None: ...

    def strict(info: str, order: str, rec: str) -> None: ...

    # DAGManager.get_node_valid_inputs: a default wins over None; no default: None
    assert inputs.for_function(respond) == {"info": "red"}
    assert inputs.for_function(strict) == {"order": None, "info": "red", "rec": None}


def test_activate_is_compares_as_yaml_1_2_like_pf(tmp_path: Path) -> None:
    nodes = py("a", "x: '${inputs.x}'") + py("b", "v: '${a.output}'", ", activate: {when: '${a.output}', is: yes}")
    flow = flow_of(tmp_path, "x: {type: string}", "b: {type: string, reference: '${b.output}'}", nodes)
    assert flow.node("b").activate is not None and flow.node("b").activate.is_ == "yes"  # not True, as YAML 1.1 reads
    row = asyncio.run(run_row(flow, {"x": "q"}, Recorder({"a": "yes", "b": "B"})))
    assert row.outputs == {"b": "B"}


def test_nested_references_into_outputs(tmp_path: Path) -> None:
    class Verdict:
        def __init__(self) -> None:
            self.label = "ok"

    nodes = (
        py("parse", "x: '${inputs.x}'")
        + py("judge", "x: '${inputs.x}'")
        + py("use", "first: '${parse.output.hits[0].title}', label: '${judge.output.label}', n: 3, fixed: hi")
    )
    outputs = (
        "title: {type: string, reference: '${parse.output.hits[1].title}'}, "
        "all: {type: object, reference: '${use.output}'}, echo: {type: string, reference: '${inputs.x}'}"
    )
    flow = flow_of(tmp_path, "x: {type: string}", outputs, nodes)
    parsed = {"hits": [{"title": "first"}, {"title": "second"}]}
    recorder = Recorder({"parse": parsed, "judge": Verdict(), "use": lambda v: v})
    row = asyncio.run(run_row(flow, {"x": "q"}, recorder))
    assert recorder.inputs["use"].values == {"first": "first", "label": "ok", "n": 3, "fixed": "hi"}
    assert row.outputs == {"title": "second", "all": recorder.inputs["use"].values, "echo": "q"}


def test_a_reference_the_output_does_not_have_fails_the_row_in_one_line(tmp_path: Path) -> None:
    nodes = py("a", "x: '${inputs.x}'") + py("b", "v: '${a.output.missing}'")
    flow = flow_of(tmp_path, "x: {type: string}", "", nodes)
    with pytest.raises(
        DataError,
        match=r"node 'b' input 'v' reads \$\{a.output.missing\}, but the output of node 'a' "
        r"has no 'missing' \(it is a dict with keys 'present'\)",
    ):
        asyncio.run(run_row(flow, {"x": "q"}, Recorder({"a": {"present": 1}, "b": 0})))


def test_row_inputs_take_defaults_and_types_as_pf(tmp_path: Path) -> None:
    inputs = (
        "n: {type: int}, ratio: {type: double, default: 0.5}, flag: {type: bool}, tags: {type: list}, "
        "meta: {type: object}, text: {type: string}"
    )
    flow = flow_of(tmp_path, inputs, "", "")
    given = {"n": "3", "flag": "True", "tags": '["a", "b"]', "meta": "not json", "text": 12, "extra": "kept"}
    assert flow_inputs(flow, given) == {
        "n": 3,
        "ratio": 0.5,
        "flag": True,
        "tags": ["a", "b"],
        "meta": "not json",
        "text": "12",
        "extra": "kept",
    }
    with pytest.raises(DataError, match="input 'n': no value in this row, and the flow gives no default"):
        flow_inputs(flow, {k: v for k, v in given.items() if k != "n"})
    with pytest.raises(DataError, match="input 'n': 'three' is not a valid int"):
        flow_inputs(flow, {**given, "n": "three"})
    with pytest.raises(DataError, match="input 'flag': 'yes' is not a valid bool"):
        flow_inputs(flow, {**given, "flag": "yes"})


def test_a_failing_node_fails_the_row_and_cancels_the_nodes_still_running(tmp_path: Path) -> None:
    nodes = py("boom", "x: '${inputs.x}'") + py("slow", "x: '${inputs.x}'") + py("later", "v: '${slow.output}'")
    flow = flow_of(tmp_path, "x: {type: string}", "", nodes)
    cancelled: list[str] = []

    async def run_node(node: Node, inputs: NodeInputs) -> Any:
        if node.name == "boom":
            await asyncio.sleep(0)
            raise ValueError("bad answer")
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.append(node.name)
            raise

    with pytest.raises(ValueError, match="bad answer") as caught:  # the timeout only stops a hang if nothing cancels
        asyncio.run(asyncio.wait_for(run_row(flow, {"x": "q"}, run_node), timeout=10))
    assert cancelled == ["slow"]
    assert any("in node 'boom'" in note for note in caught.value.__notes__)


# --- aggregation -------------------------------------------------------------------------------------------------

EVAL = """
    inputs:
      groundtruth: {type: string}
      prediction: {type: string}
    outputs:
      grade: {type: string, reference: '${grade.output}'}
      accuracy: {type: double, reference: '${calculate_accuracy.output}'}
    nodes:
    - name: calculate_accuracy
      type: python
      source: {type: code, path: calculate_accuracy.py}
      inputs: {grades: '${grade.output}', truths: '${inputs.groundtruth}', scores: '${grade.output.score}'}
      aggregation: true
    - name: grade
      type: python
      source: {type: code, path: grade.py}
      inputs: {groundtruth: '${inputs.groundtruth}', prediction: '${inputs.prediction}'}
      activate: {when: '${inputs.prediction}', is: APP}
    - name: report
      type: python
      source: {type: code, path: grade.py}
      inputs: {accuracy: '${calculate_accuracy.output}', label: summary}
      aggregation: true
"""


def test_aggregation_nodes_run_once_over_every_rows_values(tmp_path: Path) -> None:
    flow = load_dag(write_flow(tmp_path / "eval", EVAL, ["calculate_accuracy.py", "grade.py"]))
    # flow_validator._ensure_outputs_valid: an output reading an aggregation node is dropped
    assert list(flow.outputs) == ["grade"]
    assert [r.key for r in flow.aggregation_refs()] == ["${grade.output}", "${grade.output.score}"]

    def grade(values: dict[str, Any]) -> dict[str, Any]:
        ok = values["groundtruth"] == values["prediction"]
        return {"correct": ok, "score": 1.0 if ok else 0.0}

    per_row = Recorder({"grade": grade})
    rows = [
        asyncio.run(run_row(flow, {"groundtruth": truth, "prediction": pred}, per_row))
        for truth, pred in [("APP", "APP"), ("GAME", "APP"), ("APP", "GAME")]
    ]
    assert [row.bypassed for row in rows] == [(), (), ("grade",)]
    first = {"${grade.output}": {"correct": True, "score": 1.0}, "${grade.output.score}": 1.0}
    assert rows[0].aggregation_inputs == first
    assert rows[2].aggregation_inputs == {"${grade.output}": None, "${grade.output.score}": None}
    assert "start calculate_accuracy" not in per_row.events  # per-row runs leave aggregation nodes alone

    once = Recorder(
        {
            "calculate_accuracy": lambda v: sum(s or 0 for s in v["scores"]) / len(v["scores"]),
            "report": lambda v: f"{v['label']}: {v['accuracy']:.2f}",
        }
    )
    stored = [RowResult.model_validate_json(row.model_dump_json()) for row in rows]  # rows as a store keeps them
    result = asyncio.run(run_aggregation(flow, stored, once))
    assert once.inputs["calculate_accuracy"].values == {
        "grades": [{"correct": True, "score": 1.0}, {"correct": False, "score": 0.0}, None],
        "truths": ["APP", "GAME", "APP"],
        "scores": [1.0, 0.0, None],
    }
    assert once.events.index("end calculate_accuracy") < once.events.index("start report")
    assert result == {"calculate_accuracy": 1 / 3, "report": "summary: 0.33"}


def test_a_flow_without_aggregation_nodes_aggregates_nothing(tmp_path: Path) -> None:
    flow = flow_of(tmp_path, "x: {type: string}", "", py("a", "x: '${inputs.x}'"))
    recorder = Recorder({})
    assert asyncio.run(run_aggregation(flow, [], recorder)) == {}
    assert recorder.events == []
