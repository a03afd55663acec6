"""Prompt flow's names without Prompt flow (pf/compat, pf/metrics): the import hook is there only inside
`promptflow_names()`, names llmcorr does not supply fail clearly, `tool` marks, `log_metric` collects, keys never
show, connections come from llmcorr.toml endpoints, and a Prompty renders and counts through llmcorr's loader."""

from __future__ import annotations

import contextvars
import importlib
import sys
import threading
from pathlib import Path

import pytest

from llmcorr.config import Config, EndpointConfig
from llmcorr.errors import UserError
from llmcorr.pf.compat import promptflow_names
from llmcorr.pf.compat.connections import AzureOpenAIConnection, CustomConnection, OpenAIConnection
from llmcorr.pf.compat.core import AzureOpenAIModelConfiguration, OpenAIModelConfiguration, tool
from llmcorr.pf.compat.prompty import Prompty
from llmcorr.pf.connections import Connections, as_connection
from llmcorr.pf.flex import flow_folder
from llmcorr.pf.metrics import collecting, log_metric

KEY = "sk-test-0123456789abcdef-secret"


def stand_ins() -> list[str]:
    loaded = [(k, m) for k, m in sys.modules.items() if k == "promptflow" or k.startswith("promptflow.")]
    return [k for k, m in loaded if "stand-in" in (m.__doc__ or "")]


def test_the_names_are_there_only_inside_the_block() -> None:
    with promptflow_names():
        import promptflow
        from promptflow.core import AzureOpenAIModelConfiguration as Configured
        from promptflow.core import Prompty as Loaded
        from promptflow.tracing import start_trace, trace

        assert Loaded is Prompty and Configured is AzureOpenAIModelConfiguration
        assert promptflow.tool is tool and callable(trace) and start_trace() is None
        assert set(stand_ins()) == {"promptflow", "promptflow.core", "promptflow.tracing"}
    assert stand_ins() == [] and not any(k == "promptflow" or k.startswith("promptflow.") for k in sys.modules)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("promptflow.core")
    sys.modules.pop("promptflow", None)  # promptflow-evals' namespace, which the failed import above leaves


def test_blocks_nest_and_rows_in_threads_see_them() -> None:
    seen: list[object] = []
    with promptflow_names():
        with promptflow_names():
            importlib.import_module("promptflow.connections")
        connections = importlib.import_module("promptflow.connections")  # the outer block still holds
        worker = threading.Thread(target=lambda: seen.append(importlib.import_module("promptflow.tracing").trace))
        worker.start()
        worker.join()
        assert connections.OpenAIConnection is OpenAIConnection and len(seen) == 1
    assert stand_ins() == []


def test_what_llmcorr_does_not_supply_fails_with_a_clear_message() -> None:
    with promptflow_names():
        with pytest.raises(ImportError, match=r"stand-in for promptflow.core does not offer 'Flow'"):
            from promptflow.core import Flow  # noqa: F401
        with pytest.raises(ImportError, match=r"does not offer 'PFClient'"):
            from promptflow import PFClient  # noqa: F401
        with pytest.raises(ModuleNotFoundError, match=r"llmcorr does not supply promptflow.client"):
            importlib.import_module("promptflow.client")
        with pytest.raises(ModuleNotFoundError, match=r"promptflow.azure \(Azure ML workspaces are Azure-only\)"):
            importlib.import_module("promptflow.azure")
        with pytest.raises(ModuleNotFoundError, match=r"does not supply promptflow.tools \(call LLMs through Prompty"):
            importlib.import_module("promptflow.tools.aoai")
        core = importlib.import_module("promptflow.core")
        assert not hasattr(core, "__wrapped__")  # dunder look-ups stay AttributeErrors (inspect, pickle)
        from promptflow.core._flow import Prompty as Defined  # where promptflow defines it; flows import it there

        assert Defined is Prompty
        with pytest.raises(ModuleNotFoundError, match=r"llmcorr does not supply promptflow.core._utils"):
            importlib.import_module("promptflow.core._utils")
    assert stand_ins() == []


def test_tool_marks_the_function_itself() -> None:
    def plain(x: int) -> int:
        return x + 1

    named = tool(name="adder", description="adds one")

    class Tools:
        @tool
        def method(self, x: int) -> int:
            return x * 2

    assert tool(plain) is plain and plain.__llmcorr_tool__ and plain(1) == 2  # type: ignore[attr-defined]
    assert named(plain) is plain and plain.__llmcorr_tool_info__["name"] == "adder"  # type: ignore[attr-defined]
    assert Tools().method(3) == 6 and Tools.method.__llmcorr_tool__  # type: ignore[attr-defined]
    with pytest.raises(UserError, match="no such tool type"):
        tool(type="nonsense")


def test_log_metric_collects_in_its_own_block_and_is_a_no_op_outside() -> None:
    log_metric("ignored", 1.0)  # outside a run: nothing happens
    with collecting() as outer:
        log_metric("accuracy", 0.5)
        with collecting() as inner:
            log_metric("accuracy", 0.75, variant_id="variant_1")  # pf 1.18.5: the key is the key, variant aside
        worker = threading.Thread(target=lambda: log_metric("threads", 2))  # a bare thread: another context
        worker.start()
        worker.join()
        copied = threading.Thread(target=contextvars.copy_context().run, args=(log_metric, "copied", 3))
        copied.start()  # a thread that carries the block's context, as a row's does
        copied.join()
    assert inner == {"accuracy": 0.75}
    assert outer == {"accuracy": 0.5, "copied": 3}


def test_configurations_and_connections_never_show_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = AzureOpenAIModelConfiguration(azure_deployment="gpt", azure_endpoint="https://x", api_key=KEY)
    openai = OpenAIModelConfiguration(model="m", api_key=KEY)
    azure = AzureOpenAIConnection(api_base="https://x", api_key=KEY)
    custom = CustomConnection(secrets={"token": KEY}, configs={"region": "eu"})
    for shown in (repr(config), str(openai), repr(azure), str(azure), repr(custom), f"{custom}"):
        assert KEY not in shown
    assert "azure_deployment='gpt'" in repr(config) and "region='eu'" in repr(custom)
    assert azure.api_key == KEY and custom.token == KEY and custom.secrets["token"] == KEY
    with pytest.raises(UserError, match="connection and azure_endpoint"):
        AzureOpenAIModelConfiguration(azure_deployment="gpt", azure_endpoint="https://x", connection="c")


def test_from_endpoint_builds_a_connection_from_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_AOAI_KEY", KEY)
    endpoint = EndpointConfig(
        name="gpt4o", kind="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key_env="MY_AOAI_KEY"
    )
    azure = AzureOpenAIConnection.from_endpoint("my_conn", endpoint)
    assert (azure.name, azure.api_base, azure.api_key, azure.api_version) == (
        "my_conn",
        "http://127.0.0.1:9/v1",
        KEY,
        endpoint.api_version,
    )
    assert OpenAIConnection.from_endpoint("c", endpoint).base_url == "http://127.0.0.1:9/v1"
    assert CustomConnection.from_endpoint("c", endpoint).secrets == {"api_key": KEY}
    loose = OpenAIConnection.from_endpoint("c", None)
    assert loose.api_key is None and loose.base_url is None
    # a tool argument typed as a connection, by name: the endpoint's connection; through --connection's mapping too
    connections = Connections.of(Config(endpoints=[endpoint]), {"my_conn": "gpt4o"})
    with connections.active():
        built = as_connection(AzureOpenAIConnection, "my_conn", "node 'x'")
    assert isinstance(built, AzureOpenAIConnection) and built.api_base == endpoint.base_url
    assert connections.used == {"my_conn": "gpt4o"}


PROMPTY = """---
name: Ask
model:
  api: chat
  configuration:
    type: azure_openai
    azure_deployment: gpt-35-turbo
  parameters:
    max_tokens: 20
inputs:
  question:
    type: string
sample:
  question: What is a flow?
---
system:
You answer briefly.

user:
{{ question }}
"""


@pytest.fixture
def prompty_file(tmp_path: Path) -> Path:
    path = tmp_path / "flows" / "ask.prompty"
    path.parent.mkdir()
    path.write_text(PROMPTY)
    return path


def test_prompty_renders_and_counts_through_llmcorrs_loader(prompty_file: Path) -> None:
    prompty = Prompty.load(source=prompty_file)
    rendered = prompty.render(question="Why?")
    assert "'role': 'system'" in rendered and "'content': 'Why?'" in rendered
    assert "What is a flow?" in prompty.render()  # no inputs: the file's sample, as Prompt flow does
    count = prompty.estimate_token_count(question="Why?")
    longer = prompty.estimate_token_count(question="Why? " * 50)
    assert 20 < count < longer  # prompt tokens plus the file's max_tokens
    bigger = Prompty.load(source=prompty_file, model={"parameters": {"max_tokens": 120}})
    assert bigger.estimate_token_count(question="Why?") == count + 100  # model= merged over the file's
    with pytest.raises(UserError, match=r"llmcorr\.chat/achat work inside a flow run"):
        prompty(question="Why?")
    with pytest.raises(UserError, match="question' is missing"):
        prompty.render(other="x")


def test_a_relative_source_is_read_from_the_flows_folder(prompty_file: Path) -> None:
    with flow_folder(prompty_file.parent):
        assert Prompty.load("ask.prompty").path == prompty_file
    with pytest.raises(UserError, match=r"ask\.prompty does not exist"):
        Prompty.load("ask.prompty")  # from the working directory, outside a flow
    with pytest.raises(UserError, match=r"not a \.prompty file"):
        Prompty.load(prompty_file.parent)  # a folder


def test_a_configurations_connection_is_an_endpoint_resolved_at_load(prompty_file: Path) -> None:
    endpoints = [
        EndpointConfig(name=n, kind="openai", model="m", base_url="http://127.0.0.1:9/v1") for n in ("my_conn", "b")
    ]
    config = Config(endpoints=endpoints)
    named = {"configuration": AzureOpenAIModelConfiguration(azure_deployment="x", connection="my_conn")}
    with Connections.of(config).active():
        assert Prompty.load(prompty_file, model=named)._route() == "my_conn"
        unknown = {"configuration": {"connection": "nope", "azure_deployment": "x"}}
        with pytest.raises(
            UserError, match=r"connection 'nope' is not an endpoint in llmcorr.toml \(endpoints: my_conn, b\)"
        ):
            Prompty.load(prompty_file, model=unknown)
        inline = {"configuration": {"azure_endpoint": "https://x", "api_key": KEY}}
        assert Prompty.load(prompty_file, model=inline)._route() is None  # any of the run's endpoints
    with Connections.of(config, {"my_conn": "b"}).active():  # --connection my_conn=b
        assert Prompty.load(prompty_file, model=named)._route() == "b"
    clash = {"configuration": {"connection": "my_conn", "azure_endpoint": "https://x"}}
    with pytest.raises(UserError, match="a connection and azure_endpoint cannot both be given"):
        Prompty.load(prompty_file, model=clash)
    outside = Prompty.load(prompty_file, model=named)  # no run's connections: resolved when called
    with Connections.of(config, {"my_conn": "b"}).active():
        assert outside._route() == "b"
