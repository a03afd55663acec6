"""How an endpoint is named wherever a run shows it (start-of-run line, `runs show`, dashboard): kind, URL, model."""

from __future__ import annotations

from pathlib import Path

from llmcorr.config import EndpointConfig
from llmcorr.providers import describe_endpoint, make_provider, printable_url
from llmcorr.providers.local import EMBEDDED_FILE
from llmcorr.scheduler import build_endpoints, describe_endpoints


def test_an_http_endpoint_is_named_by_kind_url_and_model() -> None:
    config = EndpointConfig(name="east", base_url="http://127.0.0.1:8101/v1", model="gpt-4o-mini", max_concurrency=8)
    (endpoint,) = build_endpoints([config])
    named = "east (openai http://127.0.0.1:8101/v1, model gpt-4o-mini, concurrency 8, quota: none)"
    assert describe_endpoints([endpoint]) == named
    recorded = make_provider(config).describe() | {"name": "east", "rpm": 600}
    assert (
        describe_endpoint(recorded, "600 rpm") == "east (openai http://127.0.0.1:8101/v1, model gpt-4o-mini, 600 rpm)"
    )


def test_the_embedded_model_and_another_gguf_file_are_named_as_such(tmp_path: Path) -> None:
    embedded = {"name": "local", "kind": "local", "model": "SmolLM2", "model_path": f"/site/pkg/{EMBEDDED_FILE}"}
    assert describe_endpoint(embedded, "concurrency 1") == "local (local embedded model SmolLM2, concurrency 1)"
    other = {"name": "mine", "kind": "local", "model": "qwen", "model_path": str(tmp_path / "qwen.gguf")}
    assert describe_endpoint(other) == f"mine (local embedded model {tmp_path / 'qwen.gguf'})"
    assert describe_endpoint({"name": "old"}) == "old (? (no URL recorded), model ?)"  # a record from long ago


def test_a_url_is_shown_without_its_credentials() -> None:
    url = "https://ann:hunter2@Proxy.example:8443/v1?api-key=sk-secret#x"
    assert printable_url(url) == "https://proxy.example:8443/v1"
    shown = describe_endpoint({"name": "p", "kind": "openai", "model": "m", "base_url": url})
    assert "hunter2" not in shown and "sk-secret" not in shown and "ann" not in shown
    assert printable_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
