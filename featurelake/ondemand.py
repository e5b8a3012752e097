"""Request-time (on-demand) features: one pandas function over request fields and fetched features,
run the same way in training sets (Spark, mapInArrow) and at inference (OnlineClient, in-process).

    @on_demand(request={"amount": "double"}, inputs=["customer_txn:amount_avg_30d"],
               outputs=[Feature("amount_over_avg_30d", "double")])
    def txn_context(df):
        return df.assign(amount_over_avg_30d=df.amount / df.amount_avg_30d)

Why one shared `compute`: train/serve skew comes from two implementations of the same feature.
Both paths hand `compute_arrow` an Arrow table of the same types (Spark's Arrow batches offline,
arrays built from the fetched rows with the group's declared dtypes online), which turns it into
pandas the same way, runs the function on the declared columns only, and casts the declared
outputs back to Arrow with safe casts. The rules, the same offline and online:

- the function sees only its declared columns: request fields by their names, inputs by their
  feature names (two inputs of one name are refused at definition);
- it must return a DataFrame of the same rows holding every declared output column; other columns
  it returns are dropped;
- outputs are cast to their declared Spark type without loss (1.0 may become bigint 1, 1.5 may not);
  NaN and None are null; an exception, a missing column or a lossy cast is an OnDemandError naming
  the feature and the first failing row.

Nothing here imports pyspark: the online client imports this module.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

from featurelake.definitions import Feature, _code_text, check_dtype, check_identifier, check_reference, output_name
from featurelake.errors import DefinitionError, OnDemandError, UsageError, did_you_mean

_ARROW = {"boolean": "bool_", "tinyint": "int8", "byte": "int8", "smallint": "int16", "short": "int16",
          "int": "int32", "integer": "int32", "bigint": "int64", "long": "int64", "float": "float32",
          "real": "float32", "double": "float64", "string": "string", "binary": "binary", "date": "date32"}
OUTPUT_TYPES = tuple(sorted({*_ARROW, "timestamp"}))


def arrow_type(dtype: str) -> Any:
    """The Arrow type Spark uses for a Spark SQL type name (timestamps in UTC); None for types
    outside the simple ones and arrays of them (Arrow infers those)."""
    import pyarrow as pa

    dtype = dtype.strip().lower()
    if dtype == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if dtype == "timestamp_ntz":
        return pa.timestamp("us")
    if dtype in _ARROW:
        return getattr(pa, _ARROW[dtype])()
    m = re.fullmatch(r"array<(.+)>", dtype)
    inner = arrow_type(m.group(1)) if m else None
    return pa.list_(inner) if inner is not None else None


class OnDemandFeature:
    """A request-time feature set: outputs computed by `function` (pandas in, pandas out) from
    request fields and features of registered groups. Referenced as "<name>:*" or "<name>:<output>"."""

    def __init__(self, function: Callable[[Any], Any], *, request: Mapping[str, str], inputs: Sequence[str],
                 outputs: Sequence[Feature], name: Optional[str] = None, owner: str = "", description: str = "",
                 tags: Optional[dict] = None):
        if not callable(function):
            raise DefinitionError(f"on-demand feature: the function must be callable, found {type(function).__name__}")
        self.name = check_identifier(name or getattr(function, "__name__", ""), "on-demand feature")
        where = f"on-demand feature {self.name!r}"
        if not isinstance(request, Mapping):
            raise DefinitionError(f"{where}: request must be a mapping of field name to Spark type, "
                                  f"e.g. {{'amount': 'double'}}")
        self.request = {check_identifier(k, f"{where} request field"): check_dtype(v, f"{where} request field {k!r}")
                        for k, v in request.items()}
        if isinstance(inputs, str):
            raise DefinitionError(f"{where}: inputs must be a list of references such as ['customer_txn:amount']")
        self.inputs = []
        for ref in inputs:
            group, feature = check_reference(ref, where)
            if feature == "*":
                raise DefinitionError(f"{where}: input {ref!r}: name each feature the function reads "
                                      f"(group:feature), not group:*")
            self.inputs.append(f"{group}:{feature}")
        if not outputs or not all(isinstance(f, Feature) for f in outputs):
            raise DefinitionError(f"{where}: outputs must be a non-empty list of Feature(name, dtype)")
        self.outputs = list(outputs)
        for f in self.outputs:
            if f.dtype not in OUTPUT_TYPES:
                raise DefinitionError(f"{where}: output {f.name!r} has type {f.dtype!r}; request-time outputs are "
                                      f"one of {', '.join(OUTPUT_TYPES)}")
        columns = [*self.request, *self.input_columns.values()]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise DefinitionError(f"{where}: column names {dupes} are given twice (request fields and input "
                                  f"features share one namespace): rename the request field, or read one input")
        outs = [f.name for f in self.outputs]
        clash = sorted({n for n in outs if outs.count(n) > 1} | (set(outs) & set(columns)))
        if clash:
            raise DefinitionError(f"{where}: outputs {clash} repeat an output, a request field or an input: "
                                  f"give each output its own name")
        self.function = function
        self.owner, self.description, self.tags = owner, description or (function.__doc__ or "").strip(), \
            dict(tags or {})

    # ---- what it is ---------------------------------------------------------------------------

    @property
    def input_columns(self) -> dict[str, str]:
        """Input reference -> the column name the function sees (the feature's name)."""
        return {ref: ref.split(":", 1)[1] for ref in self.inputs}

    @property
    def columns(self) -> list[str]:
        """Every column the function is given: request fields, then inputs."""
        return [*self.request, *self.input_columns.values()]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def feature_dtype(self, output: str) -> str:
        return next(f.dtype for f in self.outputs if f.name == output)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(ref.split(":")[0] for ref in self.inputs))

    @property
    def code_text(self) -> str:
        return _code_text(self.function)

    def to_dict(self) -> dict:
        return {"name": self.name, "request": self.request, "inputs": self.inputs,
                "outputs": [f.to_dict() for f in self.outputs], "code": self.code_text, "owner": self.owner,
                "description": self.description, "tags": self.tags}

    @property
    def fingerprint(self) -> str:
        """Of what decides the values (code, request, inputs, output names and types): owner,
        description and tags are metadata, not a new version."""
        data = {"request": self.request, "inputs": self.inputs, "code": self.code_text,
                "outputs": [(f.name, f.dtype) for f in self.outputs]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def selected(self, feature: str) -> list[str]:
        """'*' or an output's name -> the outputs asked for."""
        if feature == "*":
            return self.output_names
        if feature not in self.output_names:
            raise UsageError(f"unknown feature {feature!r} of on-demand feature {self.name!r}"
                             f"{did_you_mean(feature, self.output_names)}")
        return [feature]

    def check_inputs(self, groups: Mapping[str, Any]) -> None:
        """Every input names a group of the repository and one of its features."""
        where = f"on-demand feature {self.name!r}"
        for ref in self.inputs:
            group, feature = ref.split(":")
            if group not in groups:
                raise DefinitionError(f"{where}: input {ref!r} names unknown feature group {group!r}"
                                      f"{did_you_mean(group, groups)}: fix inputs=")
            names = groups[group].feature_names
            if feature not in names:
                raise DefinitionError(f"{where}: input {ref!r}: group {group!r} has no feature {feature!r}"
                                      f"{did_you_mean(feature, names)}: fix inputs=")

    def __call__(self, df: Any) -> Any:
        return self.compute(df)

    def __repr__(self) -> str:
        return f"OnDemandFeature({self.name!r}, outputs={self.output_names})"

    # ---- computing ----------------------------------------------------------------------------

    def compute(self, df: Any, *, where: str = "", describe_row: Optional[Callable[[int], str]] = None) -> Any:
        """pandas in (at least the declared columns), pandas out (the declared outputs, cast to
        their types). Errors name the feature, `where` (offline/online) and the first failing row."""
        return self.compute_arrow(_arrow_from_pandas(df, self.columns, self.name), where=where,
                                  describe_row=describe_row).to_pandas()

    def compute_arrow(self, table: Any, *, where: str = "", describe_row: Optional[Callable[[int], str]] = None) -> Any:
        """An Arrow table holding the declared columns -> an Arrow table of the outputs (declared
        types, the same rows). The one implementation both training sets and the online client run."""
        import pyarrow as pa

        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise UsageError(f"on-demand feature {self.name!r}: no value for {missing}: give "
                             f"{'request fields' if set(missing) & set(self.request) else 'inputs'} "
                             f"{[m for m in missing]}")
        given = table.select(self.columns)
        casts = {c: arrow_type(t) for c, t in self.request.items()}
        arrays = []
        for c in self.columns:
            col = given.column(c)
            target = casts.get(c)
            if target is None and pa.types.is_timestamp(col.type) and col.type.tz is not None:
                target = pa.timestamp("us", tz="UTC")  # Spark sends the session's zone: the same instant
            if target is not None and col.type != target:
                try:
                    col = col.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise UsageError(f"on-demand feature {self.name!r}: request field {c!r} of type {col.type} "
                                     f"does not fit {self.request[c]!r}: {exc}") from None
            arrays.append(col)
        given = pa.table(arrays, names=self.columns)
        rows = given.num_rows
        label = f"on-demand feature {self.name!r}" + (f" ({where})" if where else "")
        pdf = given.to_pandas()
        try:
            out = self.function(pdf.copy())
        except Exception as exc:
            raise self._failure(label, pdf, exc, describe_row) from exc
        if not hasattr(out, "columns") or not hasattr(out, "__len__"):
            raise OnDemandError(f"{label}: the function returned {type(out).__name__}, not a pandas DataFrame: "
                                f"return df.assign(...) or a DataFrame of the outputs")
        if len(out) != rows:
            raise OnDemandError(f"{label}: the function returned {len(out)} rows for {rows}: return one row per "
                                f"input row, in order (no filtering, no aggregation)")
        absent = [n for n in self.output_names if n not in out.columns]
        if absent:
            raise OnDemandError(f"{label}: the function's result lacks the declared outputs {absent} (it has "
                                f"{list(map(str, out.columns))}): add them, or fix outputs=")
        result = []
        for f in self.outputs:
            series = out[f.name].reset_index(drop=True)
            try:
                result.append(pa.Array.from_pandas(series, type=arrow_type(f.dtype), safe=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
                bad = _first_unconvertible(series, arrow_type(f.dtype))
                row = f" at row {_row_text(pdf, bad, describe_row)}" if bad is not None else ""
                raise OnDemandError(f"{label}: output {f.name!r} does not fit its declared type {f.dtype!r}{row}: "
                                    f"{exc}: cast it in the function or change the Feature's dtype") from None
        return pa.table(result, names=self.output_names)

    def _failure(self, label: str, pdf: Any, exc: Exception, describe_row: Optional[Callable[[int], str]]) -> Exception:
        """The function raised on the batch: name an undeclared column it read, else find the first
        row that raises alone."""
        name = _missing_name(exc)
        if name is not None and name not in pdf.columns:
            return OnDemandError(f"{label}: the function reads {name!r}, which is not declared: it sees only "
                                 f"{self.columns}; add it to request= or inputs=")
        bad = None
        for i in range(len(pdf)):
            try:
                self.function(pdf.iloc[i:i + 1].reset_index(drop=True))
            except Exception:
                bad = i
                break
        row = f" at row {_row_text(pdf, bad, describe_row)}" if bad is not None else ""
        return OnDemandError(f"{label}: the function raised{row}: {type(exc).__name__}: {exc}")


def on_demand(*, request: Mapping[str, str], inputs: Sequence[str], outputs: Sequence[Feature],
              name: Optional[str] = None, owner: str = "", description: str = "",
              tags: Optional[dict] = None) -> Callable[[Callable[[Any], Any]], OnDemandFeature]:
    """Decorator: the function becomes an OnDemandFeature named after it (or `name`)."""
    def wrap(function: Callable[[Any], Any]) -> OnDemandFeature:
        return OnDemandFeature(function, request=request, inputs=inputs, outputs=outputs, name=name, owner=owner,
                               description=description, tags=tags)
    return wrap


def arrow_columns(values: Mapping[str, Sequence[Any]], dtypes: Mapping[str, Optional[str]]) -> Any:
    """Python values per column -> an Arrow table, each column of its Spark dtype's Arrow type (as
    Spark would send it), so that the online path computes on what the offline path sees."""
    import pyarrow as pa

    arrays, names = [], []
    for name, column in values.items():
        dtype = dtypes.get(name)
        target = arrow_type(dtype) if dtype else None
        try:
            arrays.append(pa.array(_parsed_times(list(column), target), type=target, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            bad = _first_unconvertible(list(column), target)
            shown = list(column)[bad] if bad is not None else "?"
            raise UsageError(f"value {shown!r} of {name!r}{f' (row {bad})' if bad is not None else ''} does not fit "
                             f"type {dtype!r}: {exc}") from None
        names.append(name)
    return pa.table(arrays, names=names)


def _parsed_times(column: list, target: Any) -> list:
    """ISO-8601 text where a timestamp or a date is declared, as a request decoded from JSON holds
    it: "2026-12-06T08:00:00Z" or with an offset is that instant, without one it is UTC (Spark's
    cast in a UTC session). Anything else is left for Arrow to accept or refuse."""
    import pyarrow as pa

    if target is None or not any(isinstance(v, str) for v in column):
        return column
    if pa.types.is_timestamp(target):
        def instant(v: str) -> Any:
            try:
                t = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
            except ValueError:
                return v
            return t if target.tz is None or t.tzinfo else t.replace(tzinfo=timezone.utc)
        return [instant(v) if isinstance(v, str) else v for v in column]
    if pa.types.is_date32(target):
        def day(v: str) -> Any:
            try:
                return date.fromisoformat(v.strip())
            except ValueError:
                return v
        return [day(v) if isinstance(v, str) else v for v in column]
    return column


def _arrow_from_pandas(df: Any, columns: Sequence[str], name: str) -> Any:
    import pyarrow as pa

    missing = [c for c in columns if c not in getattr(df, "columns", [])]
    if missing:
        raise UsageError(f"on-demand feature {name!r}: the DataFrame lacks {missing}: give every request field "
                         f"and input")
    return pa.Table.from_pandas(df[list(columns)], preserve_index=False)


def _first_unconvertible(values: Any, target: Any) -> Optional[int]:
    """The index of the first value that does not convert to the Arrow type alone (a pandas
    Series converts as a Series, with safe casts)."""
    import pyarrow as pa

    series = hasattr(values, "iloc")
    for i in range(len(values)):
        try:
            if series:
                pa.Array.from_pandas(values.iloc[i:i + 1], type=target, safe=True)
            else:
                pa.array([values[i]], type=target, from_pandas=True)
        except Exception:
            return i
    return None


def _missing_name(exc: Exception) -> Optional[str]:
    """The column a KeyError or an AttributeError on a DataFrame names."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    m = re.search(r"object has no attribute '(\w+)'", str(exc)) if isinstance(exc, AttributeError) else None
    return m.group(1) if m else None


def _row_text(pdf: Any, i: int, describe_row: Optional[Callable[[int], str]]) -> str:
    values = {c: _plain(v) for c, v in pdf.iloc[i].items()}
    return f"{i} ({describe_row(i)}; values {values})" if describe_row else f"{i} (values {values})"


def _plain(v: Any) -> Any:
    try:
        import pandas as pd

        if v is None or (not isinstance(v, (list, tuple)) and pd.isna(v)):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


# ---- the catalogue (table `on_demand`: one row per registered version) ------------------------
# (apply registers them: featurelake.ondemandregister)

def versions(catalog: Any, features: Sequence[OnDemandFeature]) -> dict[str, dict]:
    """{name: {"version", "fingerprint"}} of each feature's current definition; refused when the
    definition was not applied."""
    if not features:
        return {}
    found = {(r["name"], r["fingerprint"]): int(r["version"]) for r in catalog.rows("on_demand")}
    out = {}
    for f in features:
        if (f.name, f.fingerprint) not in found:
            raise UsageError(f"on-demand feature {f.name!r} changed since the last `featurelake apply` (or was never "
                             f"applied): run `featurelake apply` first")
        out[f.name] = {"version": found[(f.name, f.fingerprint)], "fingerprint": f.fingerprint}
    return out


def describe(row: dict) -> dict:
    """A catalogue row as `catalog list/show` give it."""
    return {"kind": "on_demand", "name": row["name"], "version": row["version"], "fingerprint": row["fingerprint"],
            "request": json.loads(row["request"]), "inputs": list(row["inputs"]),
            "outputs": json.loads(row["outputs"]), "owner": row["owner"], "description": row["description"],
            "tags": row["tags"], "registered_at": row["registered_at"], "registered_by": row["registered_by"],
            "changes": row["changes"]}


def latest(catalog: Any) -> list[dict]:
    """The newest version of every registered on-demand feature."""
    newest: dict[str, dict] = {}
    for row in catalog.rows("on_demand"):
        if row["name"] not in newest or row["version"] > newest[row["name"]]["version"]:
            newest[row["name"]] = row
    return [describe(newest[n]) for n in sorted(newest)]


def show(catalog: Any, name: str) -> Optional[dict]:
    """The newest version with the list of all versions, or None when no such feature is registered."""
    rows = sorted(catalog.rows("on_demand", lambda r: r["name"] == name), key=lambda r: r["version"])
    if not rows:
        return None
    out = describe(rows[-1])
    out["code"] = rows[-1]["code"]
    out["versions"] = [{"version": r["version"], "registered_at": r["registered_at"], "changes": r["changes"],
                        "registered_by": r["registered_by"]} for r in rows]
    return out


# ---- training sets (Spark; imported inside the functions) -------------------------------------

HIDDEN = "_fl_od_"  # under pointintime.INTERNAL: input columns read for request-time features only


def hidden_column(group: str, feature: str) -> str:
    return HIDDEN + output_name(group, feature, full=True)


def split_refs(repo: Any, refs: Sequence[Any]) -> tuple[list, dict[str, list[str]]]:
    """References -> (group references, {on-demand name: outputs asked for})."""
    groups: list = []
    chosen: dict[str, list[str]] = {}
    for ref in refs:
        name, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
        if sep and name.strip() in repo.on_demand:
            picked = chosen.setdefault(name.strip(), [])
            picked += [o for o in repo.on_demand[name.strip()].selected(feature.strip()) if o not in picked]
        else:
            groups.append(ref)
    return groups, chosen


def input_refs(repo: Any, chosen: Mapping[str, Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(ref for name in chosen for ref in repo.on_demand[name].inputs))


def _column_of(plans: Sequence[Any], ref: str) -> str:
    """The training frame's column holding an input reference (asked for, or hidden)."""
    group, feature = ref.split(":")
    for plan in plans:
        if plan.group != group:
            continue
        for column, out in plan.features:
            if column == feature:
                return out
        for agg in plan.aggregations:
            if agg.output in (feature, output_name(group, feature, full=True), hidden_column(group, feature)):
                return agg.output
    raise AssertionError(f"input {ref} is not planned")


def offline_spec(catalog: Any, repo: Any, chosen: Mapping[str, Sequence[str]], plans: Sequence[Any],
                 spine_columns: Sequence[str], full_names: bool) -> dict:
    """What a training set records per on-demand feature (its registered version and fingerprint,
    which frame column feeds each of the function's columns, where each output goes), checked
    against the spine: every request field must be a spine column."""
    features = [repo.on_demand[n] for n in chosen]
    registered = versions(catalog, features)
    taken = set(spine_columns) | {o for p in plans for o in p.outputs}
    counts: dict[str, int] = {}
    for outs in chosen.values():
        for o in outs:
            counts[o] = counts.get(o, 0) + 1
    spec = {}
    for f in features:
        missing = [r for r in f.request if r not in spine_columns]
        if missing:
            raise UsageError(f"on-demand feature {f.name!r} needs request field{'s' if len(missing) > 1 else ''} "
                             f"{missing} as spine column{'s' if len(missing) > 1 else ''}: add "
                             f"{'it' if len(missing) == 1 else 'them'} to the spine (it has "
                             f"{', '.join(spine_columns)})")
        outputs = []
        for o in chosen[f.name]:
            column = output_name(f.name, o, full=full_names, shared=counts[o] > 1 or o in taken)
            if column in taken:
                raise UsageError(f"output column {column!r} of on-demand feature {f.name!r} clashes with a spine "
                                 f"column: rename that spine column")
            taken.add(column)
            outputs.append([o, column, f.feature_dtype(o)])
        # lists, not mappings: the catalogue stores JSON with sorted keys, and order is the columns' order
        spec[f.name] = {**registered[f.name], "columns": [[r, r] for r in f.request] +
                        [[c, _column_of(plans, ref)] for ref, c in f.input_columns.items()], "outputs": outputs}
    return spec


def conform_spine(df: Any, repo: Any, chosen: Mapping[str, Sequence[str]]) -> Any:
    """A request column with no type (a pandas column of None only) gets its declared type: Delta
    would drop an untyped column from the spine's copy."""
    from pyspark.sql.types import NullType

    fields = {f.name: f.dataType for f in df.schema.fields}
    for name in chosen:
        for field, dtype in repo.on_demand[name].request.items():
            if isinstance(fields.get(field), NullType):
                df = df.withColumn(field, df[field].cast(dtype))
    return df


def check_replayable(repo: Any, spec: Mapping[str, dict], training_set_id: str) -> dict[str, OnDemandFeature]:
    """The repository's on-demand features, each with the code the training set was built with."""
    out = {}
    for name, s in spec.items():
        f = repo.on_demand.get(name)
        if f is None:
            raise UsageError(f"training set {training_set_id}: on-demand feature {name!r} (version {s['version']}) is "
                             f"no longer in the repository {repo.path}: bring its definition back to replay the set")
        if f.fingerprint != s["fingerprint"]:
            raise UsageError(f"training set {training_set_id}: on-demand feature {name!r} changed since the set was "
                             f"built with its version {s['version']} (fingerprint {s['fingerprint']}, now "
                             f"{f.fingerprint}): its values would differ; bring its code back to version "
                             f"{s['version']} (`featurelake catalog show {name} --json` holds it) to replay the set")
        out[name] = f
    return out


def apply_offline(frame: Any, features: Mapping[str, OnDemandFeature], spec: Mapping[str, dict],
                  label_columns: Sequence[str], training_set_id: str) -> Any:
    """The training frame with each on-demand feature's outputs appended and the hidden inputs
    dropped, computed in the same Spark job by mapInArrow."""
    if not spec:
        return frame
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    _ship_by_value(features.values())
    keep = [f for f in frame.schema.fields if not f.name.startswith(HIDDEN)]
    extra = [StructField(column, _parse_datatype_string(dtype), True)
             for s in spec.values() for _, column, dtype in s["outputs"]]
    kept = [f.name for f in keep]

    def run(batches: Any) -> Any:
        import pyarrow as pa

        for batch in batches:
            table = pa.Table.from_batches([batch])
            yield from with_outputs(table, kept, features, spec, label_columns, training_set_id).to_batches()

    return frame.mapInArrow(run, StructType(keep + extra))


def apply_local(rows: Any, features: Mapping[str, OnDemandFeature], spec: Mapping[str, dict],
                label_columns: Sequence[str], training_set_id: str) -> Any:
    """apply_offline for a set built on the driver: the same function over the Arrow rows at once."""
    kept = [c for c in rows.column_names if not c.startswith(HIDDEN)]
    return with_outputs(rows, kept, features, spec, label_columns, training_set_id)


def with_outputs(table: Any, kept: Sequence[str], features: Mapping[str, OnDemandFeature], spec: Mapping[str, dict],
                 label_columns: Sequence[str], training_set_id: str) -> Any:
    """The `kept` columns of a table of training rows, then each on-demand feature's outputs."""
    import pyarrow as pa

    labels = [c for c in label_columns if c in kept]
    where = f"offline, training set {training_set_id}"

    def describe(i: int) -> str:
        return "spine row " + ", ".join(f"{c}={_plain(table.column(c)[i].as_py())}" for c in labels)

    arrays, names = [table.column(c) for c in kept], list(kept)
    for name, s in spec.items():
        out = None
        if table.num_rows:
            given = pa.table([table.column(col) for _, col in s["columns"]], names=[c for c, _ in s["columns"]])
            out = features[name].compute_arrow(given, where=where, describe_row=describe)
        for o, column, dtype in s["outputs"]:
            arrays.append(out.column(o) if out is not None else pa.nulls(0, arrow_type(dtype)))
            names.append(column)
    return pa.table(arrays, names=names)


def _ship_by_value(features: Any) -> None:
    """The functions' modules live in the feature repository, which executors cannot import: send
    them by value."""
    import sys

    from pyspark import cloudpickle

    for f in features:
        module = sys.modules.get(getattr(f.function, "__module__", "") or "")
        if module is not None and not module.__name__.startswith(("featurelake", "pyspark", "__main__")):
            cloudpickle.register_pickle_by_value(module)
