"""A backup's stream (`pods.stream_out`) with its taps: the file, the sha256 of the bytes on
their way and a check that reads them too, on local commands standing in for `kubectl exec`.
On real servers: tests/databases/test_backup.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from invoke import Context

from tasks._backup import pods as _pods
from tasks._backup import redis as _redis

MEGABYTE = ["sh", "-c", "head -c 1048576 /dev/urandom"]


def test_the_file_and_its_sha256_arrive_together(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    result = _pods.stream_out(Context(), MEGABYTE, partial)
    assert result.ok, result.stderr
    data = partial.read_bytes()
    assert len(data) == 1048576
    assert _pods.Tapped.of(result) == _pods.Tapped(hashlib.sha256(data).hexdigest(), None, "")


def test_a_check_reads_the_stream_and_reports_how_it_ended(tmp_path: Path) -> None:
    counted = tmp_path / "counted"
    check = ["sh", "-c", f"wc -c > {counted}; echo 'two\nlines' >&2; exit 3"]
    result = _pods.stream_out(Context(), MEGABYTE, tmp_path / "partial", check=check)
    assert result.ok, result.stderr  # the stream itself is whole; the check's verdict is apart
    assert counted.read_text().strip() == "1048576"
    tapped = _pods.Tapped.of(result)
    assert (tapped.check, tapped.errors) == (3, "two\nlines")


def test_a_check_that_stops_reading_leaves_the_file_whole(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    check = ["sh", "-c", "head -c 10 > /dev/null"]
    result = _pods.stream_out(Context(), MEGABYTE, partial, check=check)
    assert result.ok, result.stderr
    assert partial.stat().st_size == 1048576
    assert _pods.Tapped.of(result).sha256 == hashlib.sha256(partial.read_bytes()).hexdigest()


def test_a_producer_that_fails_fails_the_stream(tmp_path: Path) -> None:
    producer = ["sh", "-c", "printf partly; echo 'pg_dump: error: gone' >&2; exit 4"]
    result = _pods.stream_out(Context(), producer, tmp_path / "partial", check=["cat"])
    assert result.failed and result.exited == 4
    assert _pods.reason(result) == "pg_dump: error: gone"
    assert _pods.Tapped.of(result).check == 0


def test_a_secret_is_the_first_line_of_input_and_stays_out_of_the_file(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    producer = ["sh", "-c", "IFS= read -r secret; printf '%s' \"${#secret}\""]
    result = _pods.stream_out(Context(), producer, partial, secret="hunter22")
    assert result.ok, result.stderr
    assert partial.read_text() == "8"


@pytest.mark.parametrize("verdict", [0, 1])
def test_a_redis_snapshot_is_sent_while_it_is_checked_and_kept_only_if_it_passes(
    tmp_path: Path, verdict: int
) -> None:
    """The pod's side of backup.redis (`redis.copy_out`), on this machine with a stand-in
    redis-check-rdb that takes its time: the copy goes out while the check reads it, the
    check's report follows the stream, and its verdict is the command's."""
    snapshot = tmp_path / "dump.rdb"
    snapshot.write_bytes(b"REDIS0011" + bytes(range(256)) * 64)
    tools = tmp_path / "bin"
    tools.mkdir()
    checker = tools / "redis-check-rdb"
    checker.write_text(
        f'#!/bin/sh\nsleep 0.3; cat "$1" > /dev/null\necho "[info] 7 keys read"\nexit {verdict}\n'
    )
    checker.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(temp)}
    ran = subprocess.run(
        ["sh", "-c", _redis.copy_out(str(snapshot))], env=env, capture_output=True, timeout=30
    )
    assert ran.stdout == snapshot.read_bytes()  # sent whole, whatever the verdict
    stderr = ran.stderr.decode()
    assert stderr.index("prism-sent: bytes=") < stderr.index("[info] 7 keys read")
    assert (ran.returncode == 0) == (verdict == 0), stderr
    assert list(temp.iterdir()) == []  # the copy and the check's report are gone
