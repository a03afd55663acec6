"""Sampling parameters are checked against sane bounds where they are made: in `GenParams` (flags, the API, a flow's
`llmcorr.chat`) and in a prompt file's `model.parameters` (one line naming the file and the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmcorr.errors import ConfigError, TemplateError
from llmcorr.prompts.prompty import load_prompty
from llmcorr.providers.base import MAX_TOKENS_LIMIT, GenParams, out_of_bounds

ABSURD = 99999999999999999999999


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_tokens", ABSURD, "a whole number from 1 to 1,000,000"),
        ("max_tokens", MAX_TOKENS_LIMIT + 1, "a whole number from 1 to 1,000,000"),
        ("max_tokens", 0, "a whole number from 1 to 1,000,000"),
        ("max_tokens", 2.5, "a whole number from 1 to 1,000,000"),
        ("max_tokens", True, "a whole number from 1 to 1,000,000"),
        ("temperature", 2.5, "a number from 0 to 2"),
        ("temperature", -0.1, "a number from 0 to 2"),
        ("temperature", float("nan"), "a number from 0 to 2"),
        ("temperature", float("inf"), "a number from 0 to 2"),
        ("seed", 2**64, "a whole number that fits in 64 bits (signed)"),
        ("seed", -(2**63) - 1, "a whole number that fits in 64 bits (signed)"),
        ("seed", 1.5, "a whole number that fits in 64 bits (signed)"),
    ],
)
def test_gen_params_out_of_bounds_is_one_config_error_naming_the_field(field: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GenParams(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"{field}: expected {expected}, got "), message
    assert "\n" not in message and len(message) < 120, message


def test_gen_params_bounds_are_inclusive_and_values_within_them_are_kept() -> None:
    edge = GenParams(max_tokens=MAX_TOKENS_LIMIT, temperature=2, seed=-(2**63), stop=("\n",))
    assert edge.to_dict() == {"max_tokens": 1_000_000, "temperature": 2, "seed": -(2**63), "stop": ["\n"]}
    assert GenParams(max_tokens=1, temperature=0.0, seed=None).to_dict()["seed"] is None
    assert GenParams(max_tokens=np.int64(5), temperature=np.float64(0.5)).max_tokens == 5  # numpy numbers are numbers
    for beyond in ({"max_tokens": MAX_TOKENS_LIMIT + 1}, {"temperature": 2.0001}, {"seed": 2**63}):
        with pytest.raises(ConfigError):
            GenParams(**beyond)  # type: ignore[arg-type]


def test_a_stop_that_is_not_strings_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^stop: expected strings, got \(1,\)$"):
        GenParams(stop=(1,))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        *[
            ("top_p", 0.0, True),
            ("top_p", 1, True),
            ("top_p", 1.01, False),
            ("top_p", -1, False),
            ("top_p", "x", False),
        ],
        *[("n", 1, True), ("n", 128, True), ("n", 0, False), ("n", 129, False), ("n", 2.0, False)],
    ],
)
def test_out_of_bounds_for_parameters_llmcorr_does_not_send(field: str, value: Any, ok: bool) -> None:
    assert (out_of_bounds(field, value) is None) is ok


PROMPTY = """---
name: Bounds
model:
  api: chat
  parameters:
{parameters}
---
user:
{{{{ question }}}}
"""


@pytest.mark.parametrize(
    ("parameters", "field", "expected"),
    [
        (f"    max_tokens: {ABSURD}", "max_tokens", "a whole number from 1 to 1,000,000, got 99999999999999999999999"),
        (f"    max_tokens: '{ABSURD}'", "max_tokens", "a whole number from 1 to 1,000,000"),  # as a ${env:} gives it
        ("    max_tokens: 1000001.0", "max_tokens", "a whole number from 1 to 1,000,000"),
        ("    max_tokens: 8\n    temperature: 2.5", "temperature", "a number from 0 to 2, got 2.5"),
        ("    max_tokens: 8\n    temperature: 1e308", "temperature", "a number from 0 to 2"),
        ("    max_tokens: 8\n    seed: 18446744073709551616", "seed", "fits in 64 bits"),
        ("    max_tokens: 8\n    top_p: 1.5", "top_p", "a number from 0 to 1, got 1.5"),
        ("    max_tokens: 8\n    top_p: lots", "top_p", "a number from 0 to 1, got 'lots'"),
        ("    max_tokens: 8\n    n: 100000", "n", "a whole number from 1 to 128, got 100000"),
    ],
)
def test_a_prompt_files_absurd_parameter_names_the_file_and_field(
    tmp_path: Path, parameters: str, field: str, expected: str
) -> None:
    path = tmp_path / "bounds.prompty"
    path.write_text(PROMPTY.format(parameters=parameters), encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        load_prompty(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: model.parameters.{field}: expected "), message
    assert expected in message and "\n" not in message, message


def test_a_prompt_file_at_the_bounds_loads_and_one_step_beyond_does_not(tmp_path: Path) -> None:
    path = tmp_path / "edge.prompty"
    parameters = "    max_tokens: 1000000\n    temperature: 2\n    seed: -9223372036854775808\n    top_p: 1\n    n: 128"
    path.write_text(PROMPTY.format(parameters=parameters), encoding="utf-8")
    params = load_prompty(path).gen_params()
    assert (params.max_tokens, params.temperature, params.seed) == (1_000_000, 2.0, -(2**63))
    path.write_text(PROMPTY.format(parameters=parameters.replace("1000000", "1000001")), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"model\.parameters\.max_tokens: expected"):
        load_prompty(path)
