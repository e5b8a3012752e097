"""The driver JVM's class-data archive (featurelake.spark.class_archive): sessions map it when
make setup recorded it, and an archive HotSpot cannot map whole is never put in place."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurelake import spark as fls


def test_sessions_map_the_archive_that_setup_recorded(spark):
    archive = fls.class_archive()
    if not archive.is_file():
        pytest.skip(f"no class archive at {archive}: run `python -m featurelake.spark --prefetch` (make setup)")
    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert f"-XX:SharedArchiveFile={archive}" in options and "-Duser.timezone=UTC" in options


def test_no_archive_or_archive_off_starts_the_jvm_without_one(tmp_path, monkeypatch):
    missing = tmp_path / "spark.jsa"
    assert fls._archive_options(missing) == []
    missing.write_bytes(b"x")
    assert fls._archive_options(missing)[0] == f"-XX:SharedArchiveFile={missing}"
    monkeypatch.setenv("FEATURELAKE_CLASS_ARCHIVE", "off")
    assert fls._archive_options(missing) == []


def test_a_truncated_archive_is_refused_before_it_is_put_in_place(tmp_path, monkeypatch):
    """HotSpot crashes mapping a truncated archive: record_class_archive's check must catch one
    (a disk filling up while the JVM wrote it), and then leave the archive in place as it was."""
    archive = fls.class_archive()
    if not archive.is_file():
        pytest.skip(f"no class archive at {archive}: run `python -m featurelake.spark --prefetch` (make setup)")
    truncated = tmp_path / "truncated.jsa"
    with open(archive, "rb") as whole:
        truncated.write_bytes(whole.read(1 << 20))
    done = subprocess.run([sys.executable, "-m", "featurelake.spark", "--use-classes", str(truncated)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "FEATURELAKE_CLASS_ARCHIVE": "on"})
    assert done.returncode != 0, done.stderr[-2000:]

    # the recording child "wrote" that truncated file: nothing replaces the archive
    before, real_run = archive.stat(), subprocess.run

    def fake_record(cmd, **kw):
        if cmd[3] == "--record-classes":
            with open(archive, "rb") as whole, open(cmd[4], "wb") as out:
                out.write(whole.read(1 << 20))
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real_run(cmd, **kw)

    monkeypatch.setattr(subprocess, "run", fake_record)
    assert fls.record_class_archive() is None
    after = archive.stat()
    assert (after.st_ino, after.st_size, after.st_mtime) == (before.st_ino, before.st_size, before.st_mtime)
    assert not [p for p in archive.parent.iterdir() if p.name.startswith(f".{archive.name}.")]
    assert not list(archive.parent.glob("hs_err_pid*.log")) and not list(Path.cwd().glob("hs_err_pid*.log"))
