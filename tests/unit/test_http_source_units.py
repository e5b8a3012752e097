"""HttpSource definitions and HTTP connections (issue 25): mistakes fail when they load."""
from __future__ import annotations

import pytest

from featurelake import HttpSource
from featurelake.config import load_config
from featurelake.errors import ConfigError, DefinitionError
from featurelake.httpread import dig


@pytest.mark.parametrize("kwargs, words", [
    ({"next_link": "next", "cursor": "meta.cursor"}, "one way to page, not next_link and cursor"),
    ({"records": "data..items"}, "dotted path"),
    ({"params": {"q": [1, 2]}}, "plain values"),
    ({"watermark_param": "updated_since"}, "watermark_column="),
    ({"connection": ""}, "connections:"),
    ({"path": None}, "base_url"),
])
def test_a_bad_http_source_fails_at_definition_time_with_the_fix(kwargs, words):
    with pytest.raises(DefinitionError, match="source 'rates'") as info:
        HttpSource("rates", **{"connection": "api", "path": "/v1/rates", **kwargs})
    assert words in str(info.value)


def test_the_watermark_defaults_to_the_timestamp_column_and_the_definition_holds_no_secret():
    src = HttpSource("rates", connection="api", path="/v1/rates", records="data", cursor="meta.next",
                     watermark_param="updated_since", timestamp_column="updated_at")
    assert src.watermark_column == "updated_at"
    assert src.to_dict()["connection"] == "api" and src.to_dict()["kind"] == "http"
    assert dig({"data": {"items": [1]}}, "data.items") == [1] and dig({"data": 3}, "data.items") is None


def test_a_token_written_into_the_config_is_refused_and_one_from_the_environment_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("connections:\n  api:\n    base_url: https://api.example.com\n    token: abc123\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4.*tokens come only from the environment"):
        load_config(path, env={})
    path.write_text("connections:\n  api:\n    base_url: https://api.example.com\n    token: ${API_TOKEN}\n")
    assert load_config(path, env={"API_TOKEN": "abc123"}).connection("api").token == "abc123"
    path.write_text("connections:\n  api:\n    headers: {X-Team: risk}\n")
    with pytest.raises(ConfigError, match="needs a url .* or, for an HTTP API, a base_url"):
        load_config(path, env={})
