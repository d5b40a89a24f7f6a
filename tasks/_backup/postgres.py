"""Postgres: pg_dump -Fc out of the pod, pg_restore into it (docs/guide-corrections.md, 18)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from invoke import Context, Exit, Result

from .._core import command as _command
from .._core import guard as _guard
from .._core import postgres as _postgres
from .._core import settings as _settings
from .._core import target as _target
from . import files as _files
from . import pods as _pods


def _postgres_secrets(c: Context) -> tuple[str, str, str]:
    s = _settings.load(c)
    return (
        s.secret("PRISM_POSTGRES_USER"),
        s.secret("PRISM_POSTGRES_DB"),
        s.secret("PRISM_POSTGRES_PASSWORD"),
    )


def _connection(c: Context, user: str) -> list[str]:
    return _postgres.connection(_settings.load(c).backup.postgres_port, user)


def backup_postgres(c: Context) -> _files.Finished | None:
    """pg_dump -Fc in the pod, streamed to a partial file and verified and checksummed on the
    way (this machine's pg_restore reads every block as it arrives), then published."""
    started = time.monotonic()
    _pods.local_only(c)
    s = _settings.load(c)
    user, db, password = _postgres_secrets(c)
    _target.require_reachable(c)
    _pods.require_pod(c, s.backup.postgres_pod, "postgres")
    directory = _files.ready_dir(c)
    when = _files.stamp()
    partial = _files.partial_path(directory, "postgres", when)
    level = f"-Z{s.backup.postgres_compression}"  # see backup.postgres_compression
    dump = _postgres.READ_PASSWORD + _pods.counted(
        f"pg_dump {shlex.join([*_connection(c, user), '-Fc', level, db])}"
    )
    argv = _pods.in_pod(c, s.backup.postgres_pod, "sh", "-c", dump, stdin=True)
    check = ["pg_restore", "-f", "/dev/null"] if _has_local_pg_restore(c) else []
    with _files.writing(partial):
        result = _pods.stream_out(c, argv, partial, secret=password, check=check)
        if _guard.is_dry(c):
            return None
        if result.failed:
            raise Exit(
                f"pg_dump failed: {_pods.reason(result)}; nothing was kept (check the disk of "
                f"{directory}, PRISM_POSTGRES_USER/PASSWORD/DB in .env and "
                "`inv backends.status --only postgres`)",
                code=1,
            )
        _pods.require_whole(
            result,
            partial,
            "pg_dump",
            "check PRISM_POSTGRES_USER/PASSWORD/DB in .env and "
            "`inv backends.status --only postgres`",
        )
        tapped = _pods.Tapped.of(result)
        digest = tapped.sha256 or _files.sha256(partial)
        if tapped.check == 0:  # every block read on the way: the table of contents is left
            entries = _table_of_contents(c, partial)
        else:  # not read on the way, or this pg_restore could not: verified as a file
            entries = archive_entries(c, partial, digest)
        final = _files.publish(partial, "postgres", when, digest)
    return _files.Finished(
        final,
        final.stat().st_size,
        digest,
        time.monotonic() - started,
        _files.plural(entries, "archive entry", "archive entries"),
    )


def archive_entries(c: Context, path: Path, digest: str | None = None) -> int:
    """Verify a custom-format archive and count its entries: `pg_restore --list` reads the
    table of contents, then `pg_restore -f /dev/null` reads every data block (a dump cut short
    has a whole table of contents and fails only there). Here when this machine's pg_restore
    can read the archive, else with the pod's (the version that wrote it)."""
    local = _local_pg_restore(c, path, "--list")
    if local is not None and local.ok:
        whole = _local_pg_restore(c, path, "-f", "/dev/null")
        if whole is not None and whole.failed:
            raise Exit(f"{path.name} is not a complete archive: {_pods.reason(whole)}", code=1)
        return _count_entries(local.stdout)
    if local is not None and "unsupported version" not in local.stderr:
        raise Exit(f"{path.name} is not a readable archive: {_pods.reason(local)}", code=1)
    _target.require_reachable(c)
    s = _settings.load(c)
    _pods.require_pod(c, s.backup.postgres_pod, "postgres")
    then = 'pg_restore --list "$f" && pg_restore -f /dev/null "$f"'
    script = _pods.receive(path, digest or _files.sha256(path), then)
    answer = _pods.stream_in(
        c, _pods.in_pod(c, s.backup.postgres_pod, "sh", "-c", script, stdin=True), path
    )
    if answer.failed:
        raise Exit(f"{path.name} is not a complete archive: {_pods.reason(answer)}", code=1)
    why = "is missing" if local is None else "is older than the archive"
    print(f"this machine's pg_restore {why}; verified with the one in {s.backup.postgres_pod}")
    return _count_entries(answer.stdout)


def _table_of_contents(c: Context, path: Path) -> int:
    """The entries of an archive whose every block this machine's pg_restore has read."""
    listing = _command.query(c, ["pg_restore", "--list", str(path)], timeout=3600)
    if listing.failed:
        raise Exit(f"{path.name} is not a readable archive: {_pods.reason(listing)}", code=1)
    return _count_entries(listing.stdout)


def _has_local_pg_restore(c: Context) -> bool:
    try:
        _command.require(c, "pg_restore")
    except Exit:
        return False
    return True


def _local_pg_restore(c: Context, path: Path, *args: str) -> Result | None:
    if not _has_local_pg_restore(c):
        return None
    return _command.query(c, ["pg_restore", *args, str(path)], timeout=3600)


def _count_entries(listing: str) -> int:
    entries = [line for line in listing.splitlines() if line.strip() and not line.startswith(";")]
    return len(entries)


# "Replace the database" means what it says: every schema of the database goes, then the backup
# comes back, in one transaction. pg_restore --clean alone would keep tables made after the
# backup. PostgreSQL 15+ dumps leave the public schema out, so it is made again as initdb makes it.
# Query results go to /dev/null: psql's standard output carries only COMMITTED.
REPLACE_PRELUDE = """\\set ON_ERROR_STOP on
\\o /dev/null
BEGIN;
DO $$ DECLARE s name; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""
# The transaction commits only on this, written after the archive was read whole and its bytes
# checked; psql runs nothing after an error, so the line after COMMIT says that it happened.
# Input that ends without it (whatever stopped the pod's script) leaves the transaction open,
# and the server rolls it back when psql disconnects.
COMMITTED = "prism-restore: committed"
COMMIT = f"COMMIT;\n\\echo {COMMITTED}\n"


def _abort(why: str) -> str:
    """Input that ends psql's transaction in an error: it ends any COPY in progress, then calls
    a function that does not exist, whose name says why."""
    return f"\n\\.\nSELECT prism_restore_failed_{why}();\n"


def _replace(size: int, digest: str, psql: str) -> str:
    """Shell (in the pod; busybox sh is enough) that replaces the database with the archive on
    its standard input while it arrives: pg_restore turns it into SQL for psql's transaction,
    and sha256sum reads the same bytes. Only when pg_restore succeeded and the bytes were the
    backup's (`digest`) is COMMIT written; otherwise the transaction ends in an error. The
    rest of the input is read whatever pg_restore does, so that sha256sum always sees all of it."""
    q = shlex.quote
    steps = "\n".join(
        [
            'mkfifo "$f/bytes" && {',
            f"  printf %s {q(REPLACE_PRELUDE)}",
            '  sha256sum < "$f/bytes" > "$f/sum" & summing=$!',
            f'  head -c {size} | tee "$f/bytes" | {{ pg_restore -f -; s=$?; cat > /dev/null; exit $s; }}',
            "  restored=$?",
            "  wait $summing",
            f"  if [ $restored -ne 0 ]; then printf %s {q(_abort('pg_restore_stopped'))}",
            f'  elif [ "$(cut -c1-64 "$f/sum")" != {digest} ]; then printf %s {q(_abort("bytes_not_the_backup"))}',
            f"  else printf %s {q(COMMIT)}; fi",
            f"}} | {psql}",
        ]
    )
    return _pods.in_temp_file(steps, f="$(mktemp -d)")


def restore_postgres(c: Context, file: str, yes: bool) -> float | None:
    """Replace the database with a verified backup, all or nothing (one transaction)."""
    started = time.monotonic()
    path, t, s = _pods.restore_target(c, file)
    user, db, password = _postgres_secrets(c)
    # The archive is read once, as it streams into the pod: the restore reads every block
    # inside its transaction, and the pod checks the bytes against the checksum written at
    # backup time before it commits. A damaged archive changes nothing. (Reading it whole
    # first, here or in the pod, cost as much as half of the restore.)
    digest = _files.recorded_sum(path)
    _files.require_kind(path, "postgres")
    _pods.require_pod(c, s.backup.postgres_pod, "postgres")
    pod = s.backup.postgres_pod
    _guard.confirm(
        f"replace database {db} in {s.backup.namespace}/{pod} on cluster {t.name} "
        f"with {path.name} (objects made since the backup are dropped)?",
        yes,
    )
    psql = _postgres.psql(s.backup.postgres_port, user, db, "-q")
    script = _postgres.READ_PASSWORD + _replace(path.stat().st_size, digest, psql)
    try:
        result = _pods.stream_in(
            c, _pods.in_pod(c, pod, "sh", "-c", script, stdin=True), path, secret=password
        )
    except KeyboardInterrupt:
        raise Exit(
            f"interrupted during the restore of {db}: it runs in one transaction, so the database "
            "is either as it was or wholly restored; run the restore again to be sure",
            code=130,
        ) from None
    if _guard.is_dry(c):
        return None
    if result.failed or COMMITTED not in result.stdout:
        if _files.sha256(path) != digest:
            raise _files.damaged(path)
        raise Exit(
            f"the restore failed, nothing was changed: {_pods.reason(result)}; "
            "check PRISM_POSTGRES_USER/PASSWORD/DB in .env",
            code=1,
        )
    return time.monotonic() - started
