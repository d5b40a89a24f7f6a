"""Where the simulated cluster's binaries live: a cache outside the repo, keyed by the pins.

`scripts/build-sim-binaries.sh` builds them; this module only finds them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .settings import PROJECT_ROOT

VERSIONS_FILE = PROJECT_ROOT / "scripts" / "sim-versions.env"
BINARIES = (
    "kwokctl",
    "kwok",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "helm",
)


def versions() -> dict[str, str]:
    """The pins, parsed from the same KEY=value file the build script sources."""
    pins = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


def cache_home() -> Path:
    return Path(os.environ.get("PRISM_SIM_HOME", Path.home() / ".cache" / "prism-sim"))


def bin_dir() -> Path:
    """The directory for the current pins; it changes whenever a pin changes."""
    import hashlib

    digest = hashlib.sha256(VERSIONS_FILE.read_bytes()).hexdigest()[:12]
    return cache_home() / f"bin-{digest}"


def missing() -> list[str]:
    """Binaries of the current pins that are not built yet."""
    d = bin_dir()
    return [name for name in BINARIES if not (d / name).is_file()]
