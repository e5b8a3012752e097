"""Request-time feature definitions and the checks of their one compute (no services, no Spark)."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pytest

from conftest import ROOT
from featurelake import Feature, OnDemandFeature, on_demand
from featurelake.errors import DefinitionError, OnDemandError, UsageError


def ratio(df):
    return df.assign(ratio=df.amount / df.amount_avg_30d)


def define(fn=ratio, **kwargs) -> OnDemandFeature:
    args = {"request": {"amount": "double"}, "inputs": ["customer_txn:amount_avg_30d"],
            "outputs": [Feature("ratio", "double")], **kwargs}
    return on_demand(**args)(fn)


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({"amount": [10.0, 5.0, None], "amount_avg_30d": [4.0, None, 2.0], **columns})


def test_the_decorator_names_the_feature_after_the_function_and_keeps_the_declaration():
    f = define(owner="risk", description="amount against the average")
    assert (f.name, f.request, f.inputs, f.output_names) == ("ratio", {"amount": "double"},
                                                             ["customer_txn:amount_avg_30d"], ["ratio"])
    assert f.columns == ["amount", "amount_avg_30d"] and f.groups == ["customer_txn"]
    assert f.to_dict()["code"].startswith("def ratio(df):")


def test_the_fingerprint_follows_the_code_and_types_not_the_metadata():
    base = define()
    assert define(owner="x", description="y", tags={"a": "b"}).fingerprint == base.fingerprint
    assert define(outputs=[Feature("ratio", "float")]).fingerprint != base.fingerprint

    def ratio(df):  # the same name, other code
        return df.assign(ratio=df.amount * 2)

    assert define(ratio).fingerprint != base.fingerprint


@pytest.mark.parametrize("kwargs, message", [
    ({"request": {"amount": "money"}}, "request field 'amount': unknown dtype 'money'"),
    ({"inputs": ["customer_txn"]}, "bad feature reference 'customer_txn'"),
    ({"inputs": ["customer_txn:*"]}, "name each feature the function reads"),
    ({"outputs": []}, "outputs must be a non-empty list of Feature"),
    ({"outputs": [Feature("ratio", "map<string,int>")]}, "request-time outputs are one of"),
    ({"request": {"amount_avg_30d": "double"}}, r"column names \['amount_avg_30d'\] are given twice"),
    ({"outputs": [Feature("amount", "double")]}, r"outputs \['amount'\] repeat"),
])
def test_bad_definitions_are_refused_naming_the_feature(kwargs, message):
    with pytest.raises(DefinitionError, match=f"on-demand feature 'ratio'.*{message}|{message}"):
        define(**kwargs)


def test_compute_gives_the_declared_outputs_and_keeps_nulls():
    out = define().compute(frame(extra=[1, 2, 3]))
    assert list(out.columns) == ["ratio"]
    assert out["ratio"].tolist()[:1] == [2.5] and out["ratio"][1:].isna().all()


def test_outputs_are_cast_to_their_type_without_loss():
    whole = define(lambda df: df.assign(n=df.amount.fillna(0) * 2), outputs=[Feature("n", "bigint")], name="n")
    assert whole.compute(frame())["n"].tolist() == [20, 10, 0]
    halves = define(lambda df: df.assign(n=df.amount / 4), outputs=[Feature("n", "bigint")], name="n")
    with pytest.raises(OnDemandError, match=r"'n' \(online\): output 'n' does not fit its declared type 'bigint' "
                                            r"at row 0 \(values \{'amount': 10.0, 'amount_avg_30d': 4.0\}\)"):
        halves.compute(frame(), where="online")
    text = define(lambda df: df.assign(n="x"), outputs=[Feature("n", "double")], name="n")
    with pytest.raises(OnDemandError, match="output 'n' does not fit its declared type 'double' at row 0"):
        text.compute(frame())


def test_the_function_sees_only_declared_columns():
    sneaky = define(lambda df: df.assign(ratio=df.amount / df.hidden), name="sneaky")
    with pytest.raises(OnDemandError, match=r"'sneaky': the function reads 'hidden', which is not declared: it sees "
                                            r"only \['amount', 'amount_avg_30d'\]"):
        sneaky.compute(frame(hidden=[1.0, 2.0, 3.0]))


def test_a_raising_function_names_the_first_failing_row():
    def picky(df):
        if (df.amount == 5.0).any():
            raise ValueError("five is not allowed")
        return df.assign(ratio=df.amount)

    with pytest.raises(OnDemandError, match=r"'picky' \(offline\): the function raised at row 1 \(spine row 1; "
                                            r"values \{'amount': 5.0, 'amount_avg_30d': None\}\): ValueError: five"):
        define(picky).compute(frame(), where="offline", describe_row=lambda i: f"spine row {i}")


@pytest.mark.parametrize("fn, message", [
    (lambda df: df.amount, "returned Series, not a pandas DataFrame"),
    (lambda df: df.head(1).assign(ratio=1.0), "returned 1 rows for 3"),
    (lambda df: df, r"lacks the declared outputs \['ratio'\]"),
])
def test_a_result_of_the_wrong_shape_is_refused(fn, message):
    with pytest.raises(OnDemandError, match=message):
        define(fn, name="shape").compute(frame())


def test_request_fields_are_cast_to_their_declared_type_and_timestamps_are_utc():
    f = define(lambda df: df.assign(minutes=(df["at"] - df.opened).dt.total_seconds() / 60),
               request={"amount": "double", "at": "timestamp"}, inputs=["acct:opened"],
               outputs=[Feature("minutes", "double")], name="age")
    opened = datetime(2024, 1, 1, tzinfo=timezone.utc)
    df = pd.DataFrame({"amount": [1], "at": [pd.Timestamp("2024-01-01T01:30:00Z")], "opened": [opened]})
    assert f.compute(df)["minutes"].tolist() == [90.0]
    with pytest.raises(UsageError, match=r"no value for \['at'\]"):
        f.compute_arrow(__import__("pyarrow").table({"amount": [1.0], "opened": [opened]}))


def test_arrow_columns_type_values_as_spark_would_and_name_a_misfit():
    from featurelake.ondemand import arrow_columns

    table = arrow_columns({"n": [1, None], "t": [datetime(2024, 1, 1), None]}, {"n": "int", "t": "timestamp"})
    assert str(table.schema.field("n").type) == "int32" and str(table.schema.field("t").type) == "timestamp[us, tz=UTC]"
    with pytest.raises(UsageError, match=r"value 'ten' of 'n' \(row 1\) does not fit type 'double'"):
        arrow_columns({"n": [1.0, "ten"]}, {"n": "double"})


def test_iso_text_is_read_as_the_declared_timestamp_or_date_as_json_requests_hold_it():
    from datetime import date

    from featurelake.ondemand import arrow_columns

    table = arrow_columns({"t": ["2026-12-06T08:00:00Z", "2026-12-06T10:00:00+02:00", "2026-12-06 08:00:00", None],
                           "d": ["2026-12-06", None, date(2026, 1, 2), "2026-01-03"]}, {"t": "timestamp", "d": "date"})
    assert set(table.column("t").to_pylist()[:3]) == {datetime(2026, 12, 6, 8, tzinfo=timezone.utc)}
    assert table.column("d").to_pylist() == [date(2026, 12, 6), None, date(2026, 1, 2), date(2026, 1, 3)]
    with pytest.raises(UsageError, match=r"value 'yesterday' of 't' \(row 0\) does not fit type 'timestamp'"):
        arrow_columns({"t": ["yesterday"]}, {"t": "timestamp"})


def test_importing_the_module_does_not_import_pyspark():
    code = "import featurelake.ondemand, featurelake.online, sys; assert 'pyspark' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
