from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.config import Config
from llmcorr.errors import ConfigError


def test_defaults_follow_llmcorr_home(llmcorr_home: Path) -> None:
    config = Config.load()
    assert config.store_path == llmcorr_home / "llmcorr.db"
    assert config.provider.kind == "local"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": {"kind": "openai"}}, "bad config: provider: the openai provider needs a model name"),
        ({"provider": {"kind": "cloud"}}, "bad config: provider.kind: Input should be 'local' or 'openai'"),
        ({"provider": {"max_concurrency": 0}}, "bad config: provider.max_concurrency"),
        ({"provider": {"api_key": "sk-x"}}, "bad config: provider.api_key: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_one_clear_line(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(**overrides)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and "sk-x" not in str(info.value)
