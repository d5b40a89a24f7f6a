"""What the last deploy applied to each object, kept so that a re-run can tell that an object
is exactly as that apply left it from the API's lists alone, with no dry run per object.

Per object the ledger keeps three hashes' worth of evidence:
  - the UID of the object the apply reached (a deleted and re-created object is another one);
  - the body sent (a changed manifest, image or Secret value is a new body);
  - this field manager's own managed-fields entry, and the value of every field it names, as
    the API stored them right after the apply.

Applying a body twice changes nothing the second time. So when the body to send hashes as
before and the live object still has the same UID, the same entry and the same values in the
fields that entry names, the apply would be a no-op, and is skipped along with its dry run.
Anything else (no entry, another cluster, a field changed or taken over by another manager,
which moves its ownership away from us) falls back to the dry run and apply as before: a stale
or missing ledger costs requests, never a wrong "unchanged".

One file per cluster (the kube-system namespace's UID) in the local data directory, written
whole or not at all, mode 0600: a body's hash covers Secret values."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from .._core import guard as _guard

FORMAT = 1  # bump when what is kept, or how it is hashed, changes

Key = tuple[str, str, str]  # (kind, namespace, name), as render.key makes it


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def owned(value: Any, fields: dict[str, Any]) -> Any:
    """The parts of `value` that a managed-fields set (`fieldsV1`) names: `f:name` a field of a
    map, `k:{...}` the item of a list with those keys, `v:...` a value of a set, `i:N` the
    N-th item; an empty set (or one of only `.`) the whole value. Missing parts are None."""
    members = {k: v for k, v in fields.items() if k != "."}
    if not members:
        return value
    found: dict[str, Any] = {}
    for member, inner in members.items():
        sort, _, name = member.partition(":")
        part: Any = None
        if sort == "f" and isinstance(value, dict):
            part = owned(value.get(name), inner)
        elif sort == "k" and isinstance(value, list):
            wanted = json.loads(name)
            item = next(
                (i for i in value
                 if isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items())),
                None,
            )  # fmt: skip
            part = owned(item, inner) if item is not None else None
        elif sort == "v" and isinstance(value, list):
            part = json.loads(name) in value
        elif sort == "i" and isinstance(value, list) and name.isdigit() and int(name) < len(value):
            part = owned(value[int(name)], inner)
        found[member] = part
    return found


def evidence(live: dict[str, Any], manager: str) -> str | None:
    """The hash of `manager`'s apply entries and the values they own in `live`, or None when
    `manager` has applied nothing to it."""
    entries = sorted(
        (
            entry
            for entry in live.get("metadata", {}).get("managedFields") or []
            if entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ),
        key=digest,
    )
    if not entries:
        return None
    return digest([[entry, owned(live, entry.get("fieldsV1") or {})] for entry in entries])


class Ledger:
    """The ledger of one cluster: what was applied, read at the start of a deploy and written
    at its end."""

    def __init__(self, directory: Path, cluster: str, manager: str) -> None:
        self.path = directory / f"applied-{digest(cluster)[:16]}.json"
        self.cluster = cluster
        self.manager = manager
        self.kept: dict[str, list[str]] = self._read()

    def _read(self) -> dict[str, list[str]]:
        """The kept entries of this cluster; none when the file is missing, unreadable, of
        another format or another cluster (the deploy then dry-runs, as without a ledger)."""
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
            return {}
        objects = loaded.get("objects")
        if loaded.get("cluster") != self.cluster or not isinstance(objects, dict):
            return {}
        return {k: v for k, v in objects.items() if isinstance(v, list) and len(v) == 3}

    @staticmethod
    def _name(key: Key) -> str:
        return "/".join(key)

    def unchanged(self, key: Key, body: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """Whether applying `body` to `live` (None: not there) is known to change nothing."""
        if live is None:
            return False
        kept = self.kept.get(self._name(key))
        uid = live.get("metadata", {}).get("uid", "")
        return kept == [uid, digest(body), evidence(live, self.manager)]

    def record(self, key: Key, body: dict[str, Any], live: dict[str, Any]) -> None:
        """`body` was applied and `live` is the object as stored right after."""
        proof = evidence(live, self.manager)
        if proof is None:
            self.kept.pop(self._name(key), None)
            return
        self.kept[self._name(key)] = [live["metadata"].get("uid", ""), digest(body), proof]

    def write(self) -> None:
        """Keep the ledger for the next deploy; one that cannot be written costs it dry runs."""
        text = json.dumps(
            {"format": FORMAT, "cluster": self.cluster, "objects": self.kept},
            sort_keys=True,
            separators=(",", ":"),
        )
        with contextlib.suppress(OSError):
            _guard.write_atomically(self.path, text, mode=0o600)
