"""Backups and restores of Postgres and Redis (guide correction 16-18, 20), against real servers.

The simulated cluster runs `kubectl exec postgres-0 / redis-0 -- ...` on this machine, where
tests/support/dbservers.py starts a throwaway PostgreSQL and Redis on loopback ports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import dbservers
from support.cli import INV, ROOT, make_context
from support.dbservers import Postgres, Redis
from support.sim import SimCluster

from tasks._backup import files as _files
from tasks._backup import postgres as _postgres

pytestmark = pytest.mark.cluster

Inv = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = dbservers.start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    server = dbservers.start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backends(sim_cluster: SimCluster) -> SimCluster:
    """postgres-0 and redis-0 exist (and run) in the simulated cluster."""
    deployed = sim_cluster.inv("backends.deploy", "--only", "redis,postgres")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return sim_cluster


@pytest.fixture
def backup_env(
    backends: SimCluster, postgres: Postgres, redis: Redis, tmp_path: Path
) -> dict[str, str]:
    """The simulated cluster's environment, pointed at this test's servers and backup dir."""
    return {
        **backends.env,
        "PRISM_BACKUP_DIR": str(tmp_path / "backups"),
        "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port),
        "PRISM_BACKUP_REDIS_PORT": str(redis.port),
        "PRISM_BACKUP_REDIS_DATA_DIR": str(redis.dir),
        "PRISM_BACKUP_REDIS_START_COMMAND": redis.start_command,
    }


@pytest.fixture
def run(backup_env: dict[str, str]) -> Inv:
    """The real `inv`, with no terminal and nothing on standard input."""

    def invoke(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [INV, *args],
            cwd=ROOT,
            env={**os.environ, **backup_env, **extra},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return invoke


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def notes(postgres: Postgres) -> Postgres:
    postgres.sql(
        "DROP TABLE IF EXISTS notes; CREATE TABLE notes (id int PRIMARY KEY, body text);"
        "INSERT INTO notes VALUES (1, 'one'), (2, 'two')"
    )
    return postgres


def made(result: subprocess.CompletedProcess[str], backend: str, backups: Path) -> Path:
    """The backup a successful run reported."""
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(rf"{backend} backup (\S+) ", result.stdout)
    assert found, result.stdout
    return Path(found.group(1))


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failure a user can cause ends in one line, with no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def everything_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_postgres_backup_round_trips(run: Inv, notes: Postgres, backups: Path) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)
    assert re.fullmatch(r"postgres-\d{8}-\d{6}\.dump", dump.name)
    assert everything_in(backups) == [dump.name, dump.name + ".sha256"]
    notes.sql("DELETE FROM notes WHERE id = 1; UPDATE notes SET body = 'changed' WHERE id = 2;")
    notes.sql("INSERT INTO notes VALUES (3, 'three')")

    restored = run("backup.restore-postgres", "--file", dump.name, "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert notes.sql("SELECT id, body FROM notes ORDER BY id") == "1|one\n2|two"


@pytest.mark.parametrize("level", ["", "0", "9"])
def test_the_archive_has_the_compression_level_asked_for(
    run: Inv, notes: Postgres, backups: Path, level: str
) -> None:
    """Level 1 unless PRISM_BACKUP_POSTGRES_COMPRESSION says otherwise (pg_restore --list
    shows what pg_dump wrote in the archive's header)."""
    extra = {"PRISM_BACKUP_POSTGRES_COMPRESSION": level} if level else {}
    dump = made(run("backup.postgres", **extra), "postgres", backups)
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True)
    header = re.search(r"^;\s+Compression: (\S+)$", listing.stdout, re.M)
    assert header is not None, listing.stdout
    assert header.group(1) == (level or "1")


def test_a_failing_pg_dump_leaves_no_file_and_one_line(
    run: Inv, notes: Postgres, backups: Path
) -> None:
    failed = run("backup.postgres", PRISM_POSTGRES_PASSWORD="wrong")

    line = one_line(failed)
    assert line.startswith("pg_dump failed: "), line
    assert 'password authentication failed for user "prism"' in line
    assert "wrong" not in failed.stdout + failed.stderr
    assert everything_in(backups) == []


def test_two_backups_in_the_same_second_never_overwrite(
    backup_env: dict[str, str], notes: Postgres, backups: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in backup_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(_files, "stamp", lambda: "20250102-030405")

    first = _postgres.backup_postgres(make_context())
    notes.sql("INSERT INTO notes VALUES (3, 'three')")
    second = _postgres.backup_postgres(make_context())

    assert first and second
    assert (first.path.name, second.path.name) == (
        "postgres-20250102-030405.dump",
        "postgres-20250102-030405-2.dump",
    )
    assert first.sha256 != second.sha256
    for done in (first, second):
        assert _files.sha256(done.path) == done.sha256
        assert _files.sums_path(done.path).read_text() == f"{done.sha256}  {done.path.name}\n"


def _flip_a_byte(dump: Path) -> None:
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))


def _name_other_bytes(dump: Path) -> None:
    """The archive stays whole (pg_restore reads it to the end without an error), but its
    checksum file names other bytes: only the pod's check of the streamed bytes holds the
    commit."""
    _files.sums_path(dump).write_text(f"{'0' * 64}  {dump.name}\n")


@pytest.mark.parametrize("damage", [_flip_a_byte, _name_other_bytes])
def test_a_damaged_backup_is_named_and_its_restore_changes_nothing(
    run: Inv, notes: Postgres, backups: Path, damage: Callable[[Path], None]
) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)
    notes.sql("UPDATE notes SET body = 'after the backup'")
    damage(dump)

    refused = run("backup.restore-postgres", "--file", str(dump), "--yes")

    assert "does not match its checksum" in one_line(refused)
    assert notes.sql("SELECT DISTINCT body FROM notes") == "after the backup"


def test_a_restore_streams_back_every_kind_of_object_a_schema_holds(
    run: Inv, postgres: Postgres, backups: Path
) -> None:
    """pg_restore reads the archive as it arrives, in one pass: tables related by a foreign
    key, a sequence, an index, a view, a materialized view, a function, a large object and a
    second schema all come back."""
    postgres.sql(
        "DROP SCHEMA IF EXISTS shop CASCADE; CREATE SCHEMA shop;"
        "CREATE TABLE shop.customer (id serial PRIMARY KEY, name text NOT NULL);"
        "CREATE TABLE shop.orders (id serial PRIMARY KEY,"
        " customer int NOT NULL REFERENCES shop.customer, total numeric);"
        "CREATE INDEX orders_by_customer ON shop.orders (customer);"
        "INSERT INTO shop.customer (name) SELECT 'c' || n FROM generate_series(1, 500) n;"
        "INSERT INTO shop.orders (customer, total) SELECT 1 + n % 500, n FROM generate_series(1, 5000) n;"
        "CREATE VIEW shop.big AS SELECT * FROM shop.orders WHERE total > 4000;"
        "CREATE MATERIALIZED VIEW shop.totals AS"
        " SELECT customer, sum(total) AS total FROM shop.orders GROUP BY customer;"
        "CREATE FUNCTION shop.spent(c int) RETURNS numeric LANGUAGE sql"
        " AS 'SELECT total FROM shop.totals WHERE customer = c';"
        "SELECT lo_from_bytea(424242, 'a large object')"
    )
    query = (
        "SELECT (SELECT count(*) FROM shop.big), shop.spent(7),"
        " (SELECT nextval('shop.orders_id_seq')),"
        " (SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_by_customer'),"
        " convert_from(lo_get(424242), 'UTF8')"
    )
    expected = postgres.sql(query)
    postgres.sql("SELECT setval('shop.orders_id_seq', 5000)")  # the query moved it
    dump = made(run("backup.postgres"), "postgres", backups)
    postgres.sql("DROP SCHEMA shop CASCADE; SELECT lo_unlink(424242)")

    restored = run("backup.restore-postgres", "--file", dump.name, "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert postgres.sql(query) == expected == "1000|22560|5001|1|a large object"
    postgres.sql("DROP SCHEMA shop CASCADE; SELECT lo_unlink(424242)")


def test_verify_names_what_a_good_backup_holds(run: Inv, notes: Postgres, backups: Path) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)

    checked = run("backup.verify", "--file", str(dump))

    assert checked.returncode == 0, checked.stderr
    assert re.search(r"checksum OK, pg_dump archive, \d+ entries", checked.stdout)


def test_restore_without_yes_and_no_terminal_refuses_and_changes_nothing(
    run: Inv, notes: Postgres, backups: Path
) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)
    notes.sql("UPDATE notes SET body = 'after the backup'")

    refused = run("backup.restore-postgres", "--file", str(dump))

    assert "refusing without --yes (no terminal to ask)" in one_line(refused)
    assert notes.sql("SELECT DISTINCT body FROM notes") == "after the backup"


def test_restore_on_a_cluster_the_project_did_not_create_is_refused(
    run: Inv, notes: Postgres, backups: Path, tmp_path: Path
) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)
    notes.sql("UPDATE notes SET body = 'after the backup'")

    # Another data directory holds no marker of having created this cluster (guide correction 20).
    refused = run(
        "backup.restore-postgres", "--file", str(dump), "--yes", PRISM_DATA_DIR=str(tmp_path)
    )

    assert "was not created by prism-tasks" in one_line(refused)
    assert notes.sql("SELECT DISTINCT body FROM notes") == "after the backup"


def test_an_older_local_pg_restore_hands_the_check_to_the_pod(
    run: Inv, notes: Postgres, backups: Path, tmp_path: Path
) -> None:
    dump = made(run("backup.postgres"), "postgres", backups)
    old = tmp_path / "old-client"
    old.mkdir()
    (old / "pg_restore").write_text(
        "#!/bin/sh\necho 'pg_restore: error: unsupported version (1.16) in file header' >&2\n"
        "exit 1\n"
    )
    (old / "pg_restore").chmod(0o755)

    checked = run("backup.verify", "--file", str(dump), PATH=f"{old}:{os.environ['PATH']}")

    assert checked.returncode == 0, checked.stderr
    assert "verified with the one in postgres-0" in checked.stdout


@pytest.mark.parametrize("stream_check", ["reads", "fails"])
def test_a_backup_reads_every_block_on_its_way_in(
    run: Inv, notes: Postgres, backups: Path, tmp_path: Path, stream_check: str
) -> None:
    """This machine's pg_restore reads the archive while it streams in, so the file is not
    read whole a second time (only its table of contents is); should that read fail, a full
    read of the file decides, as `backup.verify` would."""
    notes.sql("INSERT INTO notes SELECT g, repeat('x', 200) FROM generate_series(10, 5000) g")
    client, calls = tmp_path / "client", tmp_path / "calls"
    client.mkdir()
    fails = (
        'if [ "$*" = "-f /dev/null" ]; then cat >/dev/null; echo "pg_restore: error: cut" >&2; exit 1; fi\n'
        if stream_check == "fails"
        else ""
    )
    real = shutil.which("pg_restore")
    (client / "pg_restore").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n{fails}exec {real} "$@"\n'
    )
    (client / "pg_restore").chmod(0o755)

    dump = made(run("backup.postgres", PATH=f"{client}:{os.environ['PATH']}"), "postgres", backups)

    partial = r"\S+/\.postgres-\d{8}-\d{6}\.\d+\.dump\.partial"
    expected = ["-f /dev/null", f"--list {partial}"]  # the stream, then the file's contents
    if stream_check == "fails":
        expected.append(f"-f /dev/null {partial}")  # the whole file read after all
    lines = calls.read_text().splitlines()
    assert len(lines) == len(expected) and all(map(re.fullmatch, expected, lines)), lines
    assert _files.check_sum(dump)  # the checksum taken on the way is the file's
    assert subprocess.run(["pg_restore", "-f", "/dev/null", str(dump)]).returncode == 0


def test_an_unknown_pod_is_named_with_the_next_step(run: Inv, backups: Path) -> None:
    failed = run("backup.postgres", PRISM_BACKUP_POSTGRES_POD="postgres-7")

    assert one_line(failed) == (
        "pod prism-backends/postgres-7 not found on cluster prism-ci; "
        "deploy it with `inv backends.deploy --only postgres`"
    )
    assert everything_in(backups) == []


def test_a_missing_backup_file_is_named(run: Inv) -> None:
    failed = run("backup.restore-postgres", "--file", "postgres-19990101-000000.dump", "--yes")

    assert "backup file postgres-19990101-000000.dump not found" in one_line(failed)


def test_an_unreachable_cluster_stops_before_anything_is_written(
    run: Inv, backups: Path, tmp_path: Path
) -> None:
    failed = run("backup.redis", PRISM_CLUSTER_KUBECONFIG=str(tmp_path / "no-kubeconfig"))

    assert "cannot reach cluster prism-ci" in one_line(failed)
    assert everything_in(backups) == []


@pytest.fixture
def slow_snapshots(redis: Redis) -> Iterator[Redis]:
    """Every snapshot takes over a second: Redis sleeps 0.3 s per key while writing one."""
    redis.cli("FLUSHALL")
    for n in range(4):
        redis.cli("SET", f"key-{n}", "x")
    redis.cli("CONFIG", "SET", "rdb-key-save-delay", "300000")
    yield redis
    redis.cli("CONFIG", "SET", "rdb-key-save-delay", "0")


def test_a_redis_backup_waits_for_bgsave_to_move_lastsave(
    run: Inv, slow_snapshots: Redis, backups: Path
) -> None:
    # An older snapshot sits in Redis' dir: copying it before BGSAVE ends would miss the write.
    slow_snapshots.cli("SAVE")
    slow_snapshots.cli("SET", "just-before", "fresh")

    result = run("backup.redis")

    rdb = made(result, "redis", backups)
    assert "waiting for BGSAVE (LASTSAVE still" in result.stdout
    assert re.fullmatch(r"redis-\d{8}-\d{6}\.rdb", rdb.name)
    assert dbservers.read_snapshot(rdb, "just-before") == "fresh"


def test_a_redis_restore_brings_back_the_key_count(run: Inv, redis: Redis, backups: Path) -> None:
    redis.cli("FLUSHALL")
    for n in range(3):
        redis.cli("SET", f"key-{n}", f"value-{n}")
    rdb = made(run("backup.redis"), "redis", backups)
    redis.cli("FLUSHALL")
    redis.cli("SET", "written-later", "x")

    restored = run("backup.restore-redis", "--file", str(rdb), "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "3 keys, as in the backup" in restored.stdout
    assert redis.cli("DBSIZE") == "3"
    assert redis.cli("GET", "key-0") == "value-0"


def test_a_restore_replaces_the_database_dropping_what_came_after(
    run: Inv, notes: Postgres, backups: Path
) -> None:
    notes.sql("DROP TABLE IF EXISTS later; DROP SCHEMA IF EXISTS extra CASCADE")
    dump = made(run("backup.postgres"), "postgres", backups)
    notes.sql("CREATE TABLE later (id int); CREATE SCHEMA extra; CREATE TABLE extra.t (id int)")

    restored = run("backup.restore-postgres", "--file", dump.name, "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    tables = notes.sql(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )
    assert tables == "public.notes"
    assert notes.sql("SELECT count(*) FROM notes") == "2"


def test_a_dump_cut_short_fails_verify_though_its_table_of_contents_reads(
    run: Inv, notes: Postgres, backups: Path, tmp_path: Path
) -> None:
    """A truncated custom-format archive still lists (`pg_restore --list` reads only the table
    of contents): verify must read every data block, and refuse it."""
    notes.sql("INSERT INTO notes SELECT g, repeat('x', 200) FROM generate_series(10, 5000) g")
    dump = made(run("backup.postgres"), "postgres", backups)
    cut = tmp_path / "cut" / dump.name
    cut.parent.mkdir()
    data = dump.read_bytes()
    cut.write_bytes(data[: len(data) - 200])
    digest = _files.sha256(cut)
    _files.sums_path(cut).write_text(f"{digest}  {cut.name}\n")
    listed = subprocess.run(["pg_restore", "--list", str(cut)], capture_output=True)
    assert listed.returncode == 0  # the table of contents alone looks fine

    line = one_line(run("backup.verify", "--file", str(cut)))
    assert f"{cut.name} is not a complete archive: " in line


def test_a_partial_file_of_a_dead_run_is_swept_and_a_live_ones_kept(
    run: Inv, notes: Postgres, backups: Path
) -> None:
    backups.mkdir(parents=True, exist_ok=True)
    dead = backups / ".postgres-20250101-000000.999999999.dump.partial"
    live = backups / f".postgres-20250101-000000.{os.getpid()}.dump.partial"
    dead.write_bytes(b"PGDMP half")
    live.write_bytes(b"PGDMP writing")
    made(run("backup.postgres"), "postgres", backups)
    assert not dead.exists()
    assert live.exists()


def test_an_interrupted_redis_restore_changes_nothing_and_says_so(
    backup_env: dict[str, str], redis: Redis, backups: Path
) -> None:
    """Ctrl-C once snapshots are off and the file may be in place: Redis keeps its own data,
    writes it back over the file, gets its snapshot setting back, and the task says so."""
    redis.cli("FLUSHALL")
    redis.cli("SET", "from-the-backup", "1")
    environ = {**os.environ, **backup_env}
    made_now = subprocess.run(
        [INV, "backup.redis"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )
    rdb = made(made_now, "redis", backups)
    redis.cli("FLUSHALL")
    redis.cli("SET", "written-later", "x")
    redis.cli("CONFIG", "SET", "save", "3600 1")
    # A snapshot that takes seconds (Redis' own test knob): the restore waits for it with
    # snapshots off, and Ctrl-C lands there.
    for n in range(3):
        redis.cli("SET", f"filler-{n}", "x")
    redis.cli("CONFIG", "SET", "rdb-key-save-delay", "1500000")  # 4 keys: 6 s
    redis.cli("BGSAVE")
    try:
        task = subprocess.Popen(
            [INV, "backup.restore-redis", "--file", str(rdb), "--yes"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, like a shell's foreground job
        )
        deadline = time.monotonic() + 60
        while redis.cli("CONFIG", "GET", "save").splitlines()[1:] not in ([], [""]):
            assert time.monotonic() < deadline and task.poll() is None, "snapshots never went off"
            time.sleep(0.02)
        os.killpg(task.pid, signal.SIGINT)
        redis.cli("CONFIG", "SET", "rdb-key-save-delay", "0")  # the running snapshot stays slow
        out, err = task.communicate(timeout=60)

        assert task.returncode == 130, out + err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].endswith("nothing was changed"), out + err
        assert redis.cli("GET", "written-later") == "x"
        assert redis.cli("GET", "from-the-backup") == ""
        assert redis.cli("CONFIG", "GET", "save").splitlines()[1:] == ["3600 1"]
        assert dbservers.read_snapshot(redis.dir / "dump.rdb", "written-later") == "x"
    finally:
        redis.cli("CONFIG", "SET", "rdb-key-save-delay", "0")
        redis.cli("CONFIG", "SET", "save", "")


def test_a_disk_that_fills_up_is_one_line_and_keeps_nothing(
    backup_env: dict[str, str], notes: Postgres, tmp_path: Path
) -> None:
    """The backup directory is a 256 KiB tmpfs (in a mount namespace of the inv process's
    own): the dump does not fit."""
    notes.sql(
        "INSERT INTO notes SELECT g, md5(g::text) || md5(random()::text) "
        "FROM generate_series(100, 60000) g"
    )
    small = tmp_path / "small"
    small.mkdir()
    script = 'mount -t tmpfs -o size=256k tmpfs "$1" && shift && exec "$@"'
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(small), INV, "backup.postgres"],
        cwd=ROOT,
        env={**os.environ, **backup_env, "PRISM_BACKUP_DIR": str(small / "backups")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    notes.sql("DELETE FROM notes WHERE id >= 100")
    line = one_line(result)
    assert "No space left on device" in line or "no space left on device" in line, line
    assert "nothing was kept" in line, line
    assert everything_in(small) == []  # the tmpfs is gone with its namespace; nothing leaked


@pytest.fixture
def big_notes(notes: Postgres) -> Iterator[Postgres]:
    """Enough rows that a dump takes a moment: long enough to interrupt."""
    notes.sql(
        "INSERT INTO notes SELECT g, md5(g::text) || md5(random()::text) "
        "FROM generate_series(100, 400000) g"
    )
    yield notes
    notes.sql("DELETE FROM notes WHERE id >= 100")


def backup_in_flight(
    backup_env: dict[str, str], backups: Path, new_session: bool
) -> subprocess.Popen[str]:
    """`inv backup.postgres`, returned once its partial file exists."""
    task = subprocess.Popen(
        [INV, "backup.postgres"],
        cwd=ROOT,
        env={**os.environ, **backup_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )
    deadline = time.monotonic() + 60
    while not list(backups.glob(".*.partial")):
        assert time.monotonic() < deadline and task.poll() is None, "no partial file seen"
        time.sleep(0.01)
    return task


@pytest.mark.usefixtures("big_notes")
def test_ctrl_c_during_a_backup_leaves_no_file(backup_env: dict[str, str], backups: Path) -> None:
    """^C to the whole process group, as a terminal sends it."""
    task = backup_in_flight(backup_env, backups, new_session=True)
    os.killpg(task.pid, signal.SIGINT)
    out, err = task.communicate(timeout=60)
    assert task.returncode == 130, out + err
    assert "Traceback" not in err
    assert everything_in(backups) == []


@pytest.mark.usefixtures("big_notes")
def test_a_killed_backup_leaves_no_file_and_no_dump_running(
    backup_env: dict[str, str], postgres: Postgres, backups: Path
) -> None:
    """`kill` (SIGTERM) of the inv process alone, no terminal: the dump it started goes too."""
    task = backup_in_flight(backup_env, backups, new_session=False)
    task.terminate()
    out, err = task.communicate(timeout=60)
    assert task.returncode == 130, out + err
    assert "Traceback" not in err
    assert everything_in(backups) == []
    deadline = time.monotonic() + 10
    while dumps_of(postgres) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dumps_of(postgres) == []


def dumps_of(postgres: Postgres) -> list[str]:
    """pg_dump processes still connected to this server's port."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"pg_dump") for a in argv[:1]) and str(postgres.port).encode() in argv:
            found.append(proc.name)
    return found


def test_a_stream_that_loses_bytes_on_the_way_is_not_kept(
    backup_env: dict[str, str], notes: Postgres, backups: Path, tmp_path: Path
) -> None:
    """kubectl passes only part of the dump on and still exits 0 (a stream cut in transit):
    the pod's own byte count says so, and nothing is kept."""
    real = subprocess.run(["sh", "-c", "command -v kubectl"], capture_output=True, text=True)
    wrapper = tmp_path / "bin" / "kubectl"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *pg_dump*) {real.stdout.strip()} "$@" | {{ head -c 1000; cat >/dev/null; }};;\n'
        f'  *) exec {real.stdout.strip()} "$@";;\nesac\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, **backup_env, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [INV, "backup.postgres"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = one_line(result)
    assert re.search(r"pg_dump: the pod sent \d+ bytes but 1000 arrived; nothing was kept", line)
    assert everything_in(backups) == []


# --- backup.list: lines for people, --json for scripts -----------------------------------------


@pytest.fixture
def two_backups(run: Inv, notes: Postgres, redis: Redis, backups: Path) -> tuple[Path, Path]:
    """A real Postgres backup, then a real Redis one (newer)."""
    redis.cli("SET", "listed", "yes")
    dump = made(run("backup.postgres"), "postgres", backups)
    rdb = made(run("backup.redis"), "redis", backups)
    return dump, rdb


def test_list_json_describes_each_backup_newest_first(
    run: Inv, two_backups: tuple[Path, Path]
) -> None:
    import json
    from datetime import UTC, datetime

    dump, rdb = two_backups
    listed = run("backup.list", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [list(entry) for entry in document] == [
        ["kind", "file", "bytes", "created", "sha256"]
    ] * 2
    assert document == [
        {
            "kind": kind,
            "file": str(path),
            "bytes": path.stat().st_size,
            "created": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat("T", "seconds"),
            "sha256": _files.sha256(path),
        }
        for kind, path in (("redis", rdb), ("postgres", dump))
    ]
    assert all(entry["created"].endswith("+00:00") for entry in document)


def test_list_json_gives_null_for_a_backup_without_its_checksum_file(
    run: Inv, two_backups: tuple[Path, Path]
) -> None:
    import json

    dump, _ = two_backups
    _files.sums_path(dump).unlink()
    [entry] = [
        e for e in json.loads(run("backup.list", "--json").stdout) if e["kind"] == "postgres"
    ]
    assert entry["file"] == str(dump) and entry["sha256"] is None


def test_list_plain_output_with_no_color(run: Inv, two_backups: tuple[Path, Path]) -> None:
    dump, rdb = two_backups
    _files.sums_path(dump).unlink()
    listed = run("backup.list", NO_COLOR="1")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{_files.human(rdb.stat().st_size):>10}  {rdb}",
        f"{_files.human(dump.stat().st_size):>10}  {dump}  (no checksum file)",
    ]


def test_list_of_an_empty_directory(run: Inv, backups: Path) -> None:
    import json

    assert json.loads(run("backup.list", "--json").stdout) == []
    plain = run("backup.list", NO_COLOR="1")
    assert plain.returncode == 0
    assert plain.stdout.splitlines() == [f"no backups in {backups}"]
