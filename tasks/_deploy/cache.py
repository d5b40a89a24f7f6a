"""Rendered kustomizations, kept while nothing they are made of changes.

`kubectl kustomize` costs a process start and a render on every deploy, which is most of a
no-op re-run. Its output depends only on the files of the kustomizations it reads and on the
kubectl binary, so a render is kept under a key made of exactly those: the content of every
file in the directory tree of each kustomization reached (the overlay, and the resources,
components and bases it names, recursively) and kubectl's path, size and modification time.
A kustomization that names anything remote (a URL, a git repository) or generates through
helm is never kept: its output can change without any local file changing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .._core import guard as _guard

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
FORMAT = 1  # bump when what is stored changes shape


def _kustomization(directory: Path) -> dict[str, Any] | None:
    import yaml

    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            loaded = yaml.load((directory / name).read_text(), Loader=loader)
            return loaded if isinstance(loaded, dict) else {}
    return None


def _remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(("github.com/", "git@", "gitlab.com/"))


def sources(overlay: Path) -> list[Path] | None:
    """The kustomization directories `overlay` reads, or None when one reads anything remote."""
    reached: list[Path] = []
    todo = [Path(os.path.abspath(overlay))]
    while todo:
        directory = todo.pop()
        if directory in reached:
            continue
        kustomization = _kustomization(directory)
        if kustomization is None:
            continue  # a plain directory of files is read through its parent's tree
        if "helmCharts" in kustomization or "helmChartInflationGenerator" in kustomization:
            return None
        reached.append(directory)
        for field in ("resources", "components", "bases"):
            for entry in kustomization.get(field) or []:
                if not isinstance(entry, str) or _remote(entry):
                    return None
                target = Path(os.path.normpath(directory / entry))
                if target.is_dir():
                    todo.append(target)
    return reached


def key(overlay: Path) -> str | None:
    """What a render of `overlay` depends on, hashed; None when it cannot be kept, or when a
    kustomization cannot be read here (kustomize then renders it, and says what is wrong)."""
    import yaml

    try:
        return _key(overlay)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _key(overlay: Path) -> str | None:
    directories = sources(overlay)
    kubectl = shutil.which("kubectl")
    if directories is None or kubectl is None:
        return None
    digest = hashlib.sha256(f"{FORMAT}\0{overlay.resolve()}\0".encode())
    stat = os.stat(kubectl)
    digest.update(f"{os.path.realpath(kubectl)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    files = sorted({f for d in directories for f in d.rglob("*") if f.is_file()})
    for path in files:
        digest.update(f"{path}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _file(directory: Path, overlay: Path) -> Path:
    """One kept render per overlay, replaced when its key changes."""
    name = hashlib.sha256(str(overlay.resolve()).encode()).hexdigest()[:16]
    return directory / f"kustomize-{name}.json"


def load(directory: Path, overlay: Path, wanted: str) -> list[dict[str, Any]] | None:
    """The kept render of `overlay` if it was made under the key `wanted`."""
    try:
        kept = json.loads(_file(directory, overlay).read_text())
    except (OSError, ValueError):
        return None  # not kept yet, or unreadable: render again
    if not isinstance(kept, dict) or kept.get("key") != wanted:
        return None
    objects = kept.get("objects")
    return objects if isinstance(objects, list) else None


def store(directory: Path, overlay: Path, made: str, objects: list[dict[str, Any]]) -> None:
    """Keep a render made under the key `made`, written whole or not at all. A cache that
    cannot be written costs the next run a render, nothing else."""
    text = json.dumps({"key": made, "objects": objects}, separators=(",", ":"))
    with contextlib.suppress(OSError):
        _guard.write_atomically(_file(directory, overlay), text)
