"""Log files as a source (issue 25): each line split into the pattern's named groups, cast by
the group's transform; lines that do not match are set aside with their file, line number and
text, counted in the run, and the good lines of the same file go on."""
from __future__ import annotations

from datetime import datetime

REPO = r'''
from pyspark.sql import functions as F
from featurelake import Entity, Feature, FeatureGroup, S3Source

user = Entity("user", join_keys=["user_id"])
access = FeatureGroup(
    "access", entity=user, timestamp_column="ts",
    source=S3Source("access_log", path="{root}/access", format="text",
                    pattern=r"(?P<ts>\S+ \S+) (?P<user_id>\d+) (?P<method>GET|POST) (?P<path>/\S*)(?: (?P<ms>\d+)ms)?"),
    transform=lambda df: df.select(F.to_timestamp("ts").alias("ts"), F.col("user_id").cast("bigint").alias("user_id"),
                                   "path", F.col("ms").cast("double").alias("latency_ms")),
    features=[Feature("path", "string"), Feature("latency_ms", "double")])
'''
GOOD_BAD = ("2024-05-01 10:00:00 1 GET /home 12ms\n"
            "garbage line\n"
            "\n"
            "2024-05-01 10:00:01 2 POST /pay\n"
            "2024-05-01 10:00:02 3 PUT /nope 5ms\n")


def test_log_lines_become_columns_and_unmatched_lines_are_set_aside_with_file_and_line(make_store, tmp_path):
    root = tmp_path / "data"
    store = make_store({"groups.py": REPO.format(root=root)})
    store.apply()
    (root / "access").mkdir(parents=True)
    (root / "access" / "a.log").write_text(GOOD_BAD)
    (root / "access" / "b.log").write_text("oops\n2024-05-01 11:00:00 4 GET / 7ms\n")

    result = store.ingest("access")
    rows = {r.user_id: (r.ts, r.path, r.latency_ms) for r in store.read_offline("access").collect()}
    assert rows == {1: (datetime(2024, 5, 1, 10, 0), "/home", 12.0), 2: (datetime(2024, 5, 1, 10, 0, 1), "/pay", None),
                    4: (datetime(2024, 5, 1, 11, 0), "/", 7.0)}
    assert result.ok and (result.rows_read, result.rows_written, result.rows_rejected) == (7, 3, 4), result.summary()

    held = store.spark.read.format("delta").load(f"{store.config.root}/rejected/access").collect()
    found = sorted((r._file.rsplit("/", 1)[1], r._reason.split(" ")[1], r._record) for r in held)
    assert found == [("a.log", "2", "garbage line"), ("a.log", "3", ""),
                     ("a.log", "5", "2024-05-01 10:00:02 3 PUT /nope 5ms"), ("b.log", "1", "oops")], found
    assert all("does not match the pattern of source 'access_log'" in r._reason and r._run_id == result.run_id
               for r in held)

    again = store.ingest("access")  # each file is read once
    assert again.rows_read == 0 and len(store.read_offline("access").collect()) == 3


def test_the_groups_suite_bounds_the_share_of_unmatched_lines_with_mostly(make_store, tmp_path):
    root = tmp_path / "data"
    store = make_store({"groups.py": REPO.format(root=root),
                        "expectations/access.yml": "expectations:\n  - type: expect_column_values_to_not_be_null\n"
                                                   "    kwargs: {column: user_id, mostly: 0.7}\n"})
    store.apply()
    (root / "access").mkdir(parents=True)
    good = "".join(f"2024-05-01 10:00:0{i} {i} GET /p\n" for i in range(1, 9))
    (root / "access" / "a.log").write_text(good + "bad\nbad\n")  # 8 of 10 lines match: 0.8 >= 0.7
    first = store.ingest("access")
    assert first.ok and (first.rows_written, first.rows_rejected) == (8, 2), first.summary()

    (root / "access" / "b.log").write_text("2024-05-01 12:00:00 9 GET /p\nbad\nbad\n")  # 1 of 3: below 0.7
    second = store.ingest("access")
    assert not second.ok and second.status == "quarantined" and second.rows_written == 0, second.summary()
    assert "user_id" in second.summary() and len(store.read_offline("access").collect()) == 8
