"""Destructive steps only touch clusters this project created or the user named (guide correction 20).

`cluster.create` leaves a marker file in the environment's data directory; `require_owned` checks
for it (or for an explicit `cluster.name` / PRISM_CLUSTER_NAME) before anything is deleted,
stopped, restored or broken on purpose.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from invoke import Context, Exit

from . import command as _command
from . import settings as _settings
from .target import Target, kube_flags


def marker(s: _settings.Settings, t: Target, c: Context | None = None) -> Path:
    """Where the proof of creation lives: one file per provider and cluster name, and per
    host for clusters on remote workstations."""
    place = "" if c is None or not _command.is_remote(c) else f"{_command.where(c)}-"
    return s.local_data_dir / "clusters" / f"{place}{t.provider}-{t.name}.json"


def is_dry(c: Context) -> bool:
    return bool(c.config.get("run", {}).get("dry", False))


def cluster_uid(c: Context, t: Target) -> str:
    """What tells one cluster instance from another of the same name: the UID of its
    kube-system namespace, made when its API server first started. "" when it does not answer."""
    answer = _command.query(c, uid_query(t), timeout=15)
    return answer.stdout.strip() if answer.ok else ""


def uid_query(t: Target) -> list[str]:
    """The command that asks for the kube-system namespace's UID (`cluster_uid`)."""
    return [
        "kubectl",
        *kube_flags(t),
        "get",
        "namespace",
        "kube-system",
        "-o",
        "jsonpath={.metadata.uid}",
    ]


def record_created(c: Context, t: Target, uid: str = "") -> None:
    """Remember that this project created `t`, and which instance it is when `uid` is known
    (skipped under --dry: nothing was created)."""
    if is_dry(c):
        return
    s = _settings.load(c)
    path = marker(s, t, c)
    record = {
        "provider": t.provider,
        "name": t.name,
        "context": t.context,
        "environment": s.env,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_by": "prism-tasks",
        "uid": uid,
    }
    write_atomically(path, json.dumps(record, indent=2) + "\n", mode=0o600)


def forget(c: Context, t: Target) -> None:
    """Drop the marker once the cluster is gone: a later cluster of that name is not ours."""
    if is_dry(c):
        return
    marker(_settings.load(c), t, c).unlink(missing_ok=True)


def explicitly_named(s: _settings.Settings) -> bool:
    return bool(str(s.cluster.name))


def is_owned(c: Context, t: Target) -> bool:
    s = _settings.load(c)
    return explicitly_named(s) or marker(s, t, c).is_file()


def require_owned(c: Context, t: Target, unanswered_ok: bool = False) -> None:
    """Refuse to act on a cluster that is neither ours nor named by the user. A marker that
    recorded the cluster's instance must match the cluster there now: a same-named cluster made
    by someone else after ours is gone is not ours."""
    s = _settings.load(c)
    if t.provider == "context":
        require_allowed(s, t)
        return
    if explicitly_named(s):
        return
    path = marker(s, t, c)
    named = f"name it explicitly with PRISM_CLUSTER_NAME={t.name} to act on it"
    if not path.is_file():
        raise Exit(f"cluster {t.name} was not created by prism-tasks; {named}", code=1)
    try:
        recorded = str(json.loads(path.read_text(encoding="utf-8")).get("uid", ""))
    except (OSError, ValueError, AttributeError):
        recorded = ""  # an unreadable marker still says we created a cluster of this name
    if not recorded:
        return  # made by an interrupted create, or by an older prism-tasks: nothing to compare
    live = cluster_uid(c, t)
    if not live and unanswered_ok:
        return  # stopping a cluster that does not answer destroys nothing
    if not live:
        raise Exit(
            f"cannot confirm that cluster {t.name} is the one prism-tasks created: it does not "
            f"answer; `inv cluster.start` it first, or {named}",
            code=1,
        )
    if live != recorded:
        raise Exit(
            f"cluster {t.name} is not the one prism-tasks created (that one is gone; this one "
            f"was made since, by someone else); {named}",
            code=1,
        )


def allowed_contexts(s: _settings.Settings) -> list[str]:
    """cluster.allowed_contexts, a list whether configured as one or comma-separated."""
    return list(s.cluster.allowed_contexts)


def require_allowed(s: _settings.Settings, t: Target) -> None:
    """A cluster this project did not create is acted on only when its context is in the
    allow-list (as Tilt's `allow_k8s_contexts`): a shared cluster is never changed because a
    kubeconfig happened to point at it. The fix adds to the list: it never tells the user to
    replace the contexts allowed already."""
    allowed = allowed_contexts(s)
    if t.context not in allowed:
        now = f"now: {', '.join(allowed)}" if allowed else "now empty"
        raise Exit(
            f"context {t.context} is not in cluster.allowed_contexts ({now}): prism-tasks "
            f"changes a cluster it did not create only when allowed; add {t.context} to "
            "PRISM_CLUSTER_ALLOWED_CONTEXTS (comma-separated) or to the cluster.allowed_contexts "
            "list in invoke.yaml",
            code=1,
        )


def confirm(question: str, yes: bool) -> None:
    """Ask before destroying anything; without a terminal to ask, refuse unless --yes."""
    if yes:
        return
    import sys

    if not sys.stdin.isatty():
        raise Exit(f"{question.rstrip('?')}: refusing without --yes (no terminal to ask)", code=1)
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Exit("cancelled; nothing was changed", code=1)


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
