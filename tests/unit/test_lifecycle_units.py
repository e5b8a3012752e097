"""The lifecycle's judgement of a change, without Spark: what is only metadata, and what apply refuses."""
from __future__ import annotations

import json

from featurelake.definitions import DeltaSource, Entity, Feature, FeatureGroup
from featurelake.lifecycle import _refusal, data_part

driver = Entity("driver", join_keys=["driver_id"])
src = DeltaSource("src", path="/nowhere", timestamp_column="ts")


def group(**overrides) -> dict:
    kwargs = dict(entity=driver, source=src, timestamp_column="ts", features=[Feature("tenure_days", "int")],
                  description="Drivers", owner="ops", tags={"team": "ops"})
    return FeatureGroup("profile", **{**kwargs, **overrides}).to_dict()


def test_metadata_changes_leave_the_data_part_alone():
    base = group()
    for change in (dict(description="Drivers, by tenure"), dict(owner="risk"), dict(tags={}),
                   dict(freshness_sla="2d"), dict(features=[Feature("tenure_days", "int", "Days since signup")])):
        assert data_part(group(**change)) == data_part(base), change
    assert data_part(group(features=[Feature("tenure_days", "bigint")])) != data_part(base)
    assert data_part(group(ttl="30d")) != data_part(base)


def test_a_stored_column_type_keys_and_event_time_cannot_change():
    old = group()
    rows = [{"definition": json.dumps(old)}]
    retyped = _refusal("profile", rows, old, group(features=[Feature("tenure_days", "double")]))
    assert "tenure_days int -> double" in retyped and "'tenure_days_v2'" in retyped
    rekeyed = group(entity=Entity("driver", join_keys=["driver_id", "city"]))
    assert "define a new group (e.g. 'profile_v2')" in _refusal("profile", rows, old, rekeyed)
    assert "event time column" in _refusal("profile", rows, old, group(timestamp_column="updated_at"))
    assert _refusal("profile", rows, old, group(features=[Feature("tenure_days", "int"),
                                                           Feature("rating", "double")])) == ""
    # a feature removed in version 2 and brought back with another type: its column is still stored
    v2 = group(features=[Feature("rating", "double")])
    back = group(features=[Feature("rating", "double"), Feature("tenure_days", "string")])
    assert "tenure_days int -> string" in _refusal("profile", rows + [{"definition": json.dumps(v2)}], v2, back)
