"""Log-file sources (issue 25): the pattern is checked when the definition loads."""
from __future__ import annotations

import re

import pytest

from featurelake import S3Source
from featurelake.errors import DefinitionError
from featurelake.logfiles import columns, java_pattern

LOG = r"(?P<ts>\S+ \S+) (?P<user_id>\d+) (?P<path>/\S*)(?: (?P<ms>\d+)ms)?"


def test_a_pattern_names_its_columns_and_runs_anchored_as_java_with_the_same_group_positions():
    src = S3Source("access", path="/logs", format="text", pattern=LOG)
    assert columns(src.pattern) == ["ts", "user_id", "path", "ms"]
    assert java_pattern(LOG) == r"^(?:(\S+ \S+) (\d+) (/\S*)(?: (\d+)ms)?)$"
    assert re.match(java_pattern(LOG), "2024-01-01 10:00:00 7 /home 12ms").groups() == (
        "2024-01-01 10:00:00", "7", "/home", "12")
    assert re.match(java_pattern(LOG), "2024-01-01 10:00:00 7 /home 12ms trailing") is None  # whole line
    assert src.to_dict()["pattern"] == LOG
    assert "pattern" not in S3Source("plain", path="/p").to_dict()  # plain sources keep their fingerprint


@pytest.mark.parametrize("kwargs, words", [
    ({"pattern": "(?P<ts>\\S+"}, "does not compile"),
    ({"pattern": "(\\S+) (\\S+)"}, "no named group"),
    ({"pattern": ""}, "regular expression"),
    ({"pattern": "(?P<a>x)(?P=a)"}, "back-reference"),
    ({"pattern": "(?P<ts>x)", "format": "csv"}, 'format="text"'),
    ({"pattern": "(?P<ts>x)", "schema": "ts string"}, "remove schema="),
])
def test_a_bad_pattern_fails_at_definition_time_naming_the_source_and_the_fix(kwargs, words):
    with pytest.raises(DefinitionError, match="source 'access'") as info:
        S3Source("access", path="/logs", **{"format": "text", **kwargs})
    assert words in str(info.value)
