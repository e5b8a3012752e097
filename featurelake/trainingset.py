"""A training set as its user holds it: the manifest, and the rows, lazy in Spark or an Arrow table
already on the driver (a set localset built); to pandas, to Spark, and written to files with their
statistics recorded."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

from featurelake.errors import OnDemandError, UsageError, did_you_mean, executor_error
from featurelake.pointintime import ROW

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.store import FeatureStore

FORMATS = ("parquet", "delta", "csv")
MODES = ("overwrite", "append", "error", "errorifexists", "ignore")


def arrow_to_pandas(table: Any, naive: Sequence[str] = ()) -> Any:
    """An Arrow table from Spark -> pandas: timestamps tz-aware UTC in nanoseconds (the `naive`
    columns without their zone), integers and booleans with nulls as nullable dtypes."""
    import pandas as pd
    import pyarrow as pa

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    pdf = table.to_pandas(types_mapper=nullable.get, coerce_temporal_nanoseconds=True)
    for field in table.schema:
        column = pdf[field.name]
        if field.type in nullable and not column.hasnans:
            pdf[field.name] = column.to_numpy(dtype=nullable[field.type].numpy_dtype)
        elif pa.types.is_timestamp(field.type) and field.type.tz is not None:
            utc = column.dt.tz_convert("UTC")
            pdf[field.name] = utc.dt.tz_localize(None) if field.name in naive else utc
    return pdf


def _surfaced(action: Any) -> Any:
    """Runs a Spark action; a request-time feature that failed in an executor is raised as the
    OnDemandError it was there, naming the feature and the spine row."""
    try:
        return action()
    except Exception as exc:
        message = executor_error(exc)
        if message and message.startswith("on-demand feature"):
            raise OnDemandError(message) from None
        raise


class TrainingSet:
    """The rows and the manifest of one training set: lazy in Spark, or an Arrow table already on
    the driver for a set the driver engine built (localset)."""

    def __init__(self, store: "FeatureStore", manifest: dict, frame: Any):
        self._store, self._frame = store, frame
        self.manifest = manifest

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def columns(self) -> list[str]:
        names = self._frame.column_names if self.local_rows() is not None else self._frame.columns
        return [c for c in names if c != ROW]

    def __repr__(self) -> str:
        return (f"TrainingSet({self.id!r}, rows={self.manifest['spine_rows']:,}, "
                f"features={len(self.manifest['features'])})")

    def local_rows(self) -> Any:
        """The rows as Arrow, sorted by spine row and with its id, when on the driver; else None."""
        from pyspark.sql import DataFrame

        return None if isinstance(self._frame, DataFrame) else self._frame

    def to_spark(self) -> "DataFrame":
        """The rows as a Spark DataFrame: spine columns then features, in no particular order."""
        return self.ordered() if self.local_rows() is not None else self._frame.drop(ROW)

    def to_pandas(self) -> Any:
        """The rows in spine order, on the driver: refused above training.max_pandas_rows.
        Types survive (through Arrow): a TIMESTAMP column is tz-aware UTC, except spine columns
        that were naive in a pandas spine (TIMESTAMP_NTZ stays naive too), and an integer or
        boolean column with nulls is pandas' nullable Int64/Int32/.../boolean, not float or object."""
        rows, limit = int(self.manifest["spine_rows"]), self._store.config.training.max_pandas_rows
        if rows > limit:
            raise UsageError(f"training set {self.id} has {rows:,} rows, more than training.max_pandas_rows "
                             f"({limit:,}) allows on the driver: use ts.to_spark(), or ts.write(path) and read it "
                             f"in pieces (or raise training.max_pandas_rows in {self._store.config.path})")
        from featurelake.spark import in_utc

        table = self.local_rows()
        if table is None:
            with in_utc(self._store.spark):
                table = _surfaced(self._frame.toArrow)
        pdf = arrow_to_pandas(table, self.manifest["options"].get("naive_columns", []))
        return pdf.sort_values(ROW, kind="stable").drop(columns=[ROW]).reset_index(drop=True)

    def ordered(self) -> "DataFrame":
        """The rows with each partition sorted by spine row: the same files for the same set."""
        table = self.local_rows()
        if table is not None:
            return self._store.spark.createDataFrame(table.drop_columns([ROW]))
        return self._frame.sortWithinPartitions(ROW).drop(ROW)

    def write(self, path: Union[str, os.PathLike], format: str = "parquet", mode: str = "overwrite") -> str:
        """Writes the rows (parquet, delta or csv); a replay writes the same rows in the same files.
        Records the set's statistics too (monitoring.statistics): from the rows as written when the
        target holds them alone, from the set computed again when they were appended to others."""
        if format not in FORMATS:
            raise UsageError(f"unknown format {format!r}{did_you_mean(format, FORMATS)}: use parquet, delta or csv")
        if mode not in MODES:
            raise UsageError(f"unknown write mode {mode!r}{did_you_mean(mode, MODES)}: use one of {', '.join(MODES)}")
        from featurelake.spark import in_utc

        target, local = os.fspath(path), self.local_rows() is not None
        stamps = self._store.spark.conf.get("spark.sql.parquet.outputTimestampType") or "INT96"
        if local and format == "parquet" and not re.match(r"^[a-z][a-z0-9+.-]*:", target) \
                and self._spark_like_times(stamps):
            self._write_local(target, mode, int96=stamps == "INT96")
        else:
            with in_utc(self._store.spark):  # a CSV's times are written as UTC, whatever the caller's zone
                self._write(target, format, mode)
        if self._store.config.monitoring.statistics:
            from featurelake.monitoring import record_training_set_statistics

            written = None  # a driver-built set's statistics are of its rows in hand
            if not local and mode not in ("append", "ignore"):  # the target holds these rows alone: cheap to read
                reader = self._store.spark.read.format(format)
                written = (reader.option("header", True).schema(self._frame.drop(ROW).schema) if format == "csv"
                           else reader).load(target)
            record_training_set_statistics(self._store, self, written)
        return target

    def _spark_like_times(self, setting: str) -> bool:
        """Whether pyarrow writes this set's times as Spark would with its outputTimestampType:
        instants as INT96 (the default) or micros; zone-less times are left to Spark."""
        import pyarrow as pa

        times = [f.type for f in self._frame.schema if pa.types.is_timestamp(f.type)]
        return setting in ("INT96", "TIMESTAMP_MICROS") and all(t.tz is not None for t in times)

    def _write_local(self, target: str, mode: str, int96: bool) -> None:
        """A driver-built set to a local parquet folder, as Spark lays one out (one file and
        _SUCCESS), without a Spark job."""
        import shutil
        import uuid

        import pyarrow.parquet as pq

        folder = Path(target)
        if folder.exists():
            if mode in ("error", "errorifexists"):
                raise UsageError(f"{target} already exists: write with mode='overwrite' or 'append', or choose "
                                 f"another path")
            if mode == "ignore":
                return
            if mode == "overwrite":
                shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self._frame.drop_columns([ROW]), folder / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet",
                       use_deprecated_int96_timestamps=int96)
        (folder / "_SUCCESS").touch()

    def _write(self, target: str, format: str, mode: str) -> None:
        df = self.ordered()
        if format == "csv":
            nested = [f.name for f in df.schema.fields
                      if f.dataType.typeName() in ("struct", "array", "map", "binary")]
            if nested:
                raise UsageError(f"CSV cannot hold columns {nested}: write parquet or delta instead")
        writer = df.write.format(format).mode(mode)
        if format == "csv":
            writer = writer.option("header", True)
        if format == "delta" and mode == "overwrite":
            writer = writer.option("overwriteSchema", True)
        _surfaced(lambda: writer.save(target))

    def log_to_mlflow(self) -> None:
        """Records the manifest and the feature references as the active MLflow run's input (a run
        is started when none is active), so a model leads back to its exact training data."""
        try:
            import mlflow
        except ImportError:
            raise UsageError("log_to_mlflow needs MLflow, an optional extra: "
                             "pip install 'featurelake[mlflow]'") from None
        m = self.manifest
        mlflow.set_tags({"featurelake.training_set_id": self.id,
                         "featurelake.spine_fingerprint": m["spine_fingerprint"]})
        mlflow.log_param("featurelake.training_set_id", self.id)
        mlflow.log_dict(json.loads(json.dumps(m, default=str)), f"featurelake/training_set_{self.id}.json")
        try:
            from mlflow.data.delta_dataset_source import DeltaDatasetSource
            from mlflow.data.meta_dataset import MetaDataset
        except ImportError:  # MLflow before 2.11: the tags and the artifact say it all
            return
        dataset = MetaDataset(DeltaDatasetSource(path=m["spine_path"]), name=f"featurelake:{self.id}",
                              digest=m["spine_fingerprint"][:16])
        mlflow.log_input(dataset, context="training",
                         tags={"featurelake.features": ",".join(m["features"])[:5000]})
