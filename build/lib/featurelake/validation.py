"""The Great Expectations gate: every batch is checked against its group's suite before a write.

Suites are GE's own serialized form (`features/expectations/<group>.yml`), checked by GE's own
expectation classes when they load, so a typo fails at load time with the file and line.

Speed: GE on Spark computes its metrics in many small jobs: 22 Spark jobs for a 10-expectation
suite on a cached 1M-row batch (16.0 s), against 5 jobs (7.4 s) here; 16 against 2 jobs (8.2 s
against 2.3 s) without its uniqueness check. The common expectations (not null, between, in set, match
regex, unique, row count, column exists, type, column min/max/mean/sum) are therefore compiled
into ONE aggregation pass over the batch (plus one shuffle per `unique`, and one short `limit`
job per failed expectation for its examples), with GE's semantics (`mostly`, nulls ignored except
by the null checks, strict bounds). Everything else, and anything whose arguments or column type
the compiler (onepass.py) does not handle exactly, goes to GE itself. `engine="ge"` sends the whole suite to
GE, which is how the tests check that both give the same answers.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import yaml

from featurelake.errors import DefinitionError, UsageError, ValidationFailed, did_you_mean
from featurelake.onepass import PARTIAL_UNEXPECTED, compile_expectation, result_row, run_compiled

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SuiteLike = Union[str, Path, Sequence[dict], None]

SUITE_KEYS = ("expectations", "name", "meta", "notes", "id")
ENTRY_KEYS = ("type", "kwargs", "meta", "notes", "description", "severity", "id")
SEVERITIES = ("critical", "warning", "info")
ENGINES = ("auto", "ge")



# ---- suites -------------------------------------------------------------------------------------

def load_suite(path: Union[str, Path], columns: Optional[Sequence[str]] = None) -> list[dict]:
    """Reads and checks a suite file; returns its expectations as [{type, kwargs, ...}].

    With `columns` (the group's output columns), an expectation on any other column is an error
    now rather than a quarantined batch later."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DefinitionError(f"expectation suite {path} not found: create it (a list under `expectations:`) "
                              f"or fix the group's expectations= path") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(f"{where}: malformed YAML in expectation suite: {problem}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: an expectation suite is a mapping with an `expectations:` list, "
                              f"found a {type(data).__name__}")
    for key in data:
        if key not in SUITE_KEYS:
            raise DefinitionError(f"{path}: unknown key {key!r}{did_you_mean(str(key), SUITE_KEYS)}; a suite "
                                  f"holds `expectations:` (and optionally name, meta, notes)")
    lines: list[int] = []
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if key_node.value == "expectations" and isinstance(value_node, yaml.SequenceNode):
                lines = [item.start_mark.line + 1 for item in value_node.value]
    return check_suite(data.get("expectations") or [], str(path), lines, columns)


def check_suite(entries: Any, where: str = "expectation suite", lines: Sequence[int] = (),
                columns: Optional[Sequence[str]] = None) -> list[dict]:
    """Checks every entry with GE's own expectation class; errors name the entry and its line."""
    if not isinstance(entries, (list, tuple)):
        raise DefinitionError(f"{where}: `expectations` must be a list of {{type: expect_..., kwargs: {{...}}}}")
    known = _expectation_types()
    out = []
    for i, entry in enumerate(entries):
        at = f"{where}:{lines[i]}" if i < len(lines) else where
        at = f"{at}: expectation {i + 1}"
        if not isinstance(entry, dict):
            raise DefinitionError(f"{at}: write {{type: expect_..., kwargs: {{...}}}}, found {entry!r}")
        entry = dict(entry)
        if "expectation_type" in entry and "type" not in entry:  # GE 0.x spelling
            entry["type"] = entry.pop("expectation_type")
        for key in entry:
            if key not in ENTRY_KEYS:
                raise DefinitionError(f"{at}: unknown key {key!r}{did_you_mean(str(key), ENTRY_KEYS)}")
        etype = entry.get("type")
        if not isinstance(etype, str):
            raise DefinitionError(f"{at}: `type:` is missing; name a Great Expectations expectation such as "
                                  f"expect_column_values_to_not_be_null")
        if etype not in known:
            raise DefinitionError(f"{at}: unknown expectation type {etype!r}{did_you_mean(etype, known)}")
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise DefinitionError(f"{at} ({etype}): `kwargs:` must be a mapping such as {{column: amount}}")
        severity = str(entry.get("severity", "critical")).lower()
        if severity not in SEVERITIES:
            raise DefinitionError(f"{at} ({etype}): severity {entry['severity']!r} is not one of "
                                  f"{', '.join(SEVERITIES)}")
        _check_with_ge(etype, kwargs, f"{at} ({etype})")
        if columns is not None:
            for col in _columns_of(kwargs):
                if col not in columns:
                    raise DefinitionError(f"{at} ({etype}): column {col!r} is not an output of the group"
                                          f"{did_you_mean(col, columns)}")
        clean = {"type": etype, "kwargs": kwargs}
        clean.update({k: entry[k] for k in ("meta", "notes", "description", "id") if k in entry})
        if "severity" in entry:
            clean["severity"] = severity
        out.append(clean)
    return out


def _expectation_types() -> list[str]:
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    _quiet_ge()
    return list_registered_expectation_implementations()


def _check_with_ge(etype: str, kwargs: dict, at: str) -> None:
    """GE's pydantic model of the expectation rejects missing, extra and mistyped arguments."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        ExpectationConfiguration(type=etype, kwargs=kwargs).to_domain_obj()
    except Exception as exc:  # pydantic.v1.ValidationError, InvalidExpectationConfigurationError
        problems = []
        errors = exc.errors() if hasattr(exc, "errors") else None
        if errors:
            from great_expectations.expectations.registry import get_expectation_impl

            fields = list(getattr(get_expectation_impl(etype), "__fields__", {}))
            for err in errors:
                loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
                msg = err.get("msg", "")
                if err.get("type") == "value_error.extra":
                    msg = f"unknown argument{did_you_mean(loc, fields)}"
                elif err.get("type") == "value_error.missing":
                    msg = "required argument is missing"
                problems.append(f"{loc}: {msg}" if loc else msg)
        else:
            problems.append(str(exc))
        unique = list(dict.fromkeys(problems))
        raise DefinitionError(f"{at}: bad kwargs: {'; '.join(unique)}") from None


def _columns_of(kwargs: dict) -> list[str]:
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)]
    cols += [c for c in kwargs.get("column_list") or [] if isinstance(c, str)]
    return cols


def _resolve_suite(suite: SuiteLike) -> list[dict]:
    if suite is None:
        return []
    if isinstance(suite, (str, Path)):
        return load_suite(suite)
    if isinstance(suite, (list, tuple)):
        return check_suite(list(suite), "expectation suite (list)")
    raise UsageError(f"suite must be a path to a .yml file, a list of {{type, kwargs}} dicts or None, "
                     f"not {type(suite).__name__}")


# ---- results ------------------------------------------------------------------------------------

@dataclass
class ValidationResult:
    """The outcome of one batch: `failures` are the failed expectations (critical or not), each
    with what was observed; `success` is False when any critical one failed."""

    success: bool
    failures: list[dict] = field(default_factory=list)
    statistics: dict = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    group: Optional[str] = None
    persisted: bool = False  # validate_batch persisted the DataFrame: the caller unpersists it

    def to_dict(self) -> dict:
        """JSON-ready, for the catalogue's runs table."""
        return _jsonable({"success": self.success, "group": self.group, "statistics": self.statistics,
                          "failures": self.failures, "results": self.results})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def summary_lines(self) -> list[str]:
        """One line per failed expectation with what was observed; the CLI prints these."""
        return [describe_failure(f) for f in self.failures]

    def error(self, run_id: Optional[str] = None) -> ValidationFailed:
        """The exception to raise for a failed batch, its message listing every failure."""
        stats = self.statistics
        head = (f"{self.group or 'batch'}: {stats.get('unsuccessful_expectations', len(self.failures))} of "
                f"{stats.get('evaluated_expectations', '?')} expectations failed")
        if run_id:
            head += f" (run {run_id})"
        body = "".join(f"\n  - {line}" for line in self.summary_lines())
        return ValidationFailed(head + body, failures=self.to_dict()["failures"], run_id=run_id)


def describe_failure(r: dict) -> str:
    """`expect_x(amount, min_value=0): 3 unexpected of 1000 rows (0.3%), e.g. [-1.0]`."""
    kwargs = r.get("kwargs") or {}
    args = ", ".join(([r["column"]] if r.get("column") else []) +
                     [f"{k}={v!r}" for k, v in kwargs.items() if k != "column"])
    head = f"{r['expectation']}({args})"
    if r.get("severity", "critical") != "critical":
        head += f" [{r['severity']}]"
    if r.get("error"):
        return f"{head}: {r['error']}"
    if r.get("unexpected_count") is not None:
        n, total, pct = r["unexpected_count"], r.get("element_count"), r.get("unexpected_percent")
        text = f"{head}: {n} unexpected of {total} rows"
        if pct is not None:
            text += f" ({pct:.4g}%{' of non-null' if r.get('missing_count') else ''})"
        examples = r.get("partial_unexpected_list")
        if examples:
            text += f", e.g. {_short(examples[:5])}"
        return text
    return f"{head}: observed {_short(r.get('observed_value'))}"


def _short(value: Any) -> str:
    text = json.dumps(_jsonable(value), default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and value != value:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---- validation ---------------------------------------------------------------------------------

def validate_batch(df: "DataFrame", suite: SuiteLike, group: Optional[str] = None, *, engine: str = "auto",
                   persist: bool = True) -> ValidationResult:
    """Validates a Spark DataFrame against a suite (path, list of dicts, or None: no suite, success).

    With persist=True the batch is persisted first and LEFT persisted (result.persisted tells),
    so the write that follows reads the validated rows from the cache instead of recomputing the
    source, and a non-deterministic transform writes exactly what was validated; the caller
    unpersists after writing."""
    if engine not in ENGINES:
        raise UsageError(f"validation engine {engine!r} is not one of {ENGINES}{did_you_mean(engine, ENGINES)}")
    entries = _resolve_suite(suite)
    started = time.time()
    persisted = False
    if entries and persist and not df.is_cached:
        df.persist()
        persisted = True
    schema = {f.name: f.dataType for f in df.schema.fields}
    results: list[Optional[dict]] = [None] * len(entries)
    for i, entry in enumerate(entries):  # a column the batch lacks: say so plainly, no job needed
        if entry["type"] == "expect_column_to_exist":
            continue
        missing = [c for c in _columns_of(entry["kwargs"]) if c not in schema]
        if missing:
            results[i] = result_row(entry, "featurelake", success=False,
                                 error=f"column {missing[0]!r} is not in the batch{did_you_mean(missing[0], schema)}")
    todo = [i for i, r in enumerate(results) if r is None]
    plans = {i: compile_expectation(entries[i], schema, df) for i in todo} if engine == "auto" else {}
    compiled = {i: p for i, p in plans.items() if p is not None}
    rows = None
    if compiled:  # errors here are the source's (types and regexes were checked): they propagate
        rows, done = run_compiled(df, {i: (entries[i], p) for i, p in compiled.items()})
        for i, r in done.items():
            results[i] = r
    rest = [i for i in todo if results[i] is None]
    if rest:
        for i, r in zip(rest, _run_ge(df, [entries[i] for i in rest])):
            results[i] = r
    final = [r for r in results if r is not None]
    failures = [r for r in final if not r["success"]]
    critical = [r for r in failures if r["severity"] == "critical"]
    n = len(final)
    if rows is None:
        rows = next((r["element_count"] for r in final if r.get("element_count") is not None), None)
    stats = {"evaluated_expectations": n, "successful_expectations": n - len(failures),
             "unsuccessful_expectations": len(failures),
             "success_percent": 100.0 * (n - len(failures)) / n if n else 100.0,
             "rows": rows, "duration_s": round(time.time() - started, 3),
             "engines": {e: sum(r["engine"] == e for r in final) for e in
                         ("spark", "great_expectations", "featurelake") if any(r["engine"] == e for r in final)}}
    return ValidationResult(success=not critical, failures=failures, statistics=stats, results=final,
                            group=group, persisted=persisted)


# ---- Great Expectations itself ------------------------------------------------------------------

def _quiet_ge() -> None:
    """GE logs at INFO/WARNING per metric and draws tqdm bars; featurelake prints its own summary."""
    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)


def _run_ge(df: "DataFrame", entries: list[dict]) -> list[dict]:
    """Runs entries through GE 1.x (ephemeral context, spark data source, whole-dataframe batch)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    _quiet_ge()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False)))
        # persist=False: validate_batch decides about caching, and GE would never unpersist.
        source = context.data_sources.add_spark("featurelake", persist=False)
        batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
        expectations = []
        for i, e in enumerate(entries):
            meta = {**(e.get("meta") or {}), "featurelake_index": i}
            expectations.append(ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=meta)
                                .to_domain_obj())
        suite = gx.ExpectationSuite(name="featurelake", expectations=expectations)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        outcome = batch.validate(suite, result_format={"result_format": "BASIC",
                                                       "partial_unexpected_count": PARTIAL_UNEXPECTED})
    out: list[Optional[dict]] = [None] * len(entries)
    for result in outcome.results:
        config = result.expectation_config
        index = None if config is None else (config.meta or {}).get("featurelake_index")
        if index is None:  # not one of ours: the loop below reports every entry GE left unanswered
            continue
        res = result.result or {}
        error = _ge_exception(result.exception_info)
        row = result_row(entries[index], "great_expectations", success=bool(result.success) and not error,
                         observed_value=res.get("observed_value"), element_count=res.get("element_count"),
                         unexpected_count=res.get("unexpected_count"),
                         unexpected_percent=res.get("unexpected_percent"), missing_count=res.get("missing_count"),
                         partial_unexpected_list=res.get("partial_unexpected_list"), error=error)
        if row["expectation"] == "expect_column_to_exist" and not row["success"]:
            row["observed_value"] = list(df.columns)  # GE says nothing; the columns there say most
        out[index] = row
    for i, r in enumerate(out):
        if r is None:
            out[i] = result_row(entries[i], "great_expectations", success=False,
                             error="Great Expectations returned no result for this expectation")
    return out  # type: ignore[return-value]


def _ge_exception(info: Any) -> Optional[str]:
    """The cause of an expectation's exception, kept by GE flat or per metric: the Java or Python
    exception under Py4J's and Spark's wrappers, e.g. `PatternSyntaxException: Unclosed ...`."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else []
    for value in info.values():
        if not isinstance(value, dict):
            try:
                value = json.loads(str(value))
            except ValueError:
                continue
        if isinstance(value, dict) and "raised_exception" in value:
            entries.append(value)
    for entry in entries:
        if not entry.get("raised_exception"):
            continue
        message = str(entry.get("exception_message") or "")
        text = f"{message}\n{entry.get('exception_traceback') or ''}".replace("\\n", "\n")
        for cls, msg in re.findall(r"([A-Za-z_][\w.$]*(?:Exception|Error)): ([^\n]+)", text):
            if not cls.endswith(("Py4JJavaError", "SparkException")):
                return f"{cls.rsplit('.', 1)[-1]}: {msg.strip()}"
        return message.splitlines()[0] if message else "raised an exception"
    return None
