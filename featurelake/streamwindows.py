"""A stream group's window features online: after a micro-batch's MERGE, the items of the keys
the batch touched are recomputed from the offline table, as of each key's newest event, by the
point-in-time engine the training sets use (featurelake.pointintime). So a key's item holds
exactly what `training_set` gives for a spine row (key, its newest event time), window (t - w, t].

Why a read-back of the offline table rather than running tiles in the stream's state: the offline
table already holds every event once, late and out-of-order ones included, and survives `kill -9`
and replays; state would have to be checkpointed, rebuilt after a definition change, and kept
equal to the table by a second implementation of every aggregate. The read-back costs a scan of
the touched keys' rows within the widest window, pruned to those event dates (figures in
docs/streaming.md).

Which rows: a key's newest event t_k is at or after each of its rows in the batch, so every row
in (t_k - w, t_k] has an event time after (the batch's oldest event - the widest window); rows
after the micro-batch's end (future-dated) are left to the first export after their time, as
for groups without windows.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import reduce
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.definitions import FeatureGroup
    from featurelake.offline import OfflineTable
    from featurelake.online.snapshot import OnlineFeature
    from featurelake.pointintime import GroupPlan

AT = "_fl_stream_at"
"""The spine's time column: each touched key's newest event time."""


def widest(group: "FeatureGroup") -> timedelta:
    return max(w for agg in group.aggregations for w in agg.windows.values())


def plan_of(group: "FeatureGroup", features: list["OnlineFeature"]) -> "GroupPlan":
    """The point-in-time plan of the group's online features, each output named as the feature."""
    from featurelake.pointintime import GroupPlan, WindowAgg

    names = {f.name for f in features}
    plan = GroupPlan(group.name, list(group.keys), group.timestamp_column,
                     int(group.ttl.total_seconds() * 10**6) if group.ttl else None)
    plan.features = [(f.name, f.name) for f in group.features if f.name in names]
    plan.aggregations = [WindowAgg(name, fn, agg.column, text, int(span.total_seconds() * 10**6))
                         for agg in group.aggregations for name, fn, text, span in agg.outputs() if name in names]
    return plan


def window_frame(offline: "OfflineTable", group: "FeatureGroup", features: list["OnlineFeature"],
                 rows: "DataFrame", *, end: datetime, first_us: int) -> tuple["DataFrame", "DataFrame"]:
    """The items of the keys in `rows` (a merged micro-batch), as of each key's newest offline
    event at or before `end`, stamped as ingested at `end`, in the writer's columns (as
    snapshot.export_frame gives them); and the rows read back, cached: unpersist them after the
    write. `first_us`: the batch's oldest event time, in µs."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from featurelake.online.snapshot import _select, _ts_lit, _window
    from featurelake.pointintime import ROW, point_in_time

    keys, ts = group.keys, group.timestamp_column
    rows = rows.where(F.col(f"`{ts}`") <= _ts_lit(end))
    lo = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(first_us)) - widest(group)
    touched = rows.select(*keys).distinct()
    table = offline.read().where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    history = _window(table, ts, lo, end).join(F.broadcast(touched), keys, "left_semi") \
        .persist(StorageLevel.MEMORY_AND_DISK)
    spine = history.groupBy(*keys).agg(F.max(F.col(f"`{ts}`")).alias(AT))
    if group.ttl is not None:  # past its ttl the client hides the item anyway: no write
        spine = spine.where(F.col(AT) >= _ts_lit(end - group.ttl))
    spine = spine.withColumn(ROW, F.monotonically_increasing_id())
    plan = plan_of(group, features)
    parallelism = offline.spark.sparkContext.defaultParallelism
    out = point_in_time(spine, {group.name: history}, [plan], timestamp_column=AT, partitions=parallelism)
    kinds = {f.name: f for f in features}
    cols = [F.col(k) for k in keys] + [F.col(AT).alias(ts), _ts_lit(end).alias("_ingested_at")]
    cols += [F.col(o).cast(kinds[o].dtype).alias(o) if kinds[o].kind == "aggregation" else F.col(o)
             for o in plan.outputs]
    return _select(out.select(*cols), group, features), history

