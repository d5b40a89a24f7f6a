"""Ingress: the guide's step 1 (ingress-nginx, as a pinned Helm chart) and step 7's hosts entry.

The guide applies `controller-v1.10.0/deploy/static/provider/cloud/deploy.yaml`; chart 4.10.0 is
the same controller, installed with `helm upgrade --install`, so running it again converges.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from pathlib import Path

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target


def chart_values(t: _target.Target) -> list[str]:
    """`--set` values that depend on the cluster provider."""
    if t.provider != "kwok":
        return []
    return [
        # the simulated cluster may hold no webhooks: nothing would ever answer them
        "controller.admissionWebhooks.enabled=false",
        # no load-balancer controller assigns an address there, and `helm --wait` would wait
        # for one forever; on k3d servicelb serves the LoadBalancer behind the k3d ports
        "controller.service.type=NodePort",
    ]


@task(help={"timeout": "Seconds helm waits for the controller (default: ingress.timeout)."})
def install(c, timeout=None):
    """Install (or upgrade to) the pinned ingress-nginx chart and wait for the controller."""
    from ._core import guard as _guard
    from ._providers import for_target

    s = _settings.load(c)
    seconds = _settings.seconds(timeout, s.ingress.timeout)
    t = _target.resolve(c)
    provider = for_target(t)
    provider.require_runtime(c)
    if not _guard.is_dry(c):  # a dry run may plan against a cluster that does not exist yet
        if not provider.exists(c, s, t):
            raise Exit(
                f"cluster {t.name} does not exist ({t.provider}); run `inv cluster.create`",
                code=1,
            )
        _guard.require_owned(c, t)  # a controller and its webhook go only where we may put them
    cfg = s.ingress
    argv = [
        "upgrade",
        "--install",
        str(cfg.release),
        str(cfg.chart),
        "--repo",
        str(cfg.chart_repo),
        "--version",
        str(cfg.chart_version),
        "--create-namespace",
        "--wait",
        "--timeout",
        f"{seconds}s",
    ]
    for value in chart_values(t):
        argv += ["--set", value]
    _target.helm(c, *argv, namespace=str(cfg.namespace))
    if c.config.run.dry:
        print("dry run: the command above was printed, nothing was installed")
        return
    print(
        f"ingress-nginx {cfg.chart_version} ready in namespace {cfg.namespace} "
        f"(cluster {t.name}); next: `inv ingress.hosts`"
    )


def hosts_entry(s: _settings.Settings) -> str:
    return f"{s.ingress.address} {s.ingress.host}"


def find_host(text: str, host: str) -> tuple[int, str] | None:
    """(line number, address) of the first line that maps `host`, ignoring comments."""
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and host in fields[1:]:
            return number, fields[0]
    return None


def _needs_root(path: Path, entry: str) -> Exit:
    return Exit(
        f"cannot write {path} as this user (it needs sudo); run: "
        f"echo {shlex.quote(entry)} | sudo tee -a {shlex.quote(str(path))} >/dev/null",
        code=1,
    )


def add_host(c: Context, path: Path, entry: str) -> bool:
    """Add `entry` to the hosts file unless its host is there; True when the file changed."""
    from ._core import guard as _guard

    address, host = entry.split()
    path = path.resolve()  # a symlinked hosts file keeps its link: the target is rewritten
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Exit(
            f"hosts file {path} does not exist; set PRISM_INGRESS_HOSTS_FILE", code=1
        ) from None
    found = find_host(text, host)
    if found is not None:
        number, mapped = found
        if mapped == address:
            print(f"{path}:{number} already maps {host} to {address}; nothing to do")
            return False
        raise Exit(
            f"{path}:{number} maps {host} to {mapped}, not {address}; edit that line by hand",
            code=1,
        )
    if _guard.is_dry(c):
        print(f"would add {entry!r} to {path}")
        return False
    if not os.access(path, os.W_OK):
        raise _needs_root(path, entry)
    separator = "" if not text or text.endswith("\n") else "\n"
    try:
        _guard.write_atomically(
            path, f"{text}{separator}{entry}\n", stat.S_IMODE(path.stat().st_mode)
        )
    except OSError as error:
        # /etc not writable, or /etc/hosts bind-mounted (containers: rename gives EBUSY): one
        # short append is a single write(2), which readers see whole or not at all
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EBUSY, errno.EXDEV, errno.EROFS):
            raise
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"{separator}{entry}\n")
        except PermissionError:
            raise _needs_root(path, entry) from None
    print(f"added {entry!r} to {path}")
    return True


@task(help={"hosts_file": "Hosts file to edit (default: ingress.hosts_file, /etc/hosts)."})
def hosts(c, hosts_file=""):
    """Map prism.local to 127.0.0.1 in the hosts file (once; says when it needs sudo)."""
    from ._core import command as _command

    s = _settings.load(c)
    if _command.is_remote(c):  # the file is opened here, by Python: it would be this machine's
        raise Exit(
            f"ingress.hosts edits the hosts file of the machine it runs on, and over -H that is "
            f"this one, not {_command.label(c)}; run `inv ingress.hosts` on "
            f"{_command.label(c)} itself, or map {s.ingress.host} here to that host's address",
            code=1,
        )
    path = _settings.resolve_path(hosts_file or str(s.ingress.hosts_file))
    add_host(c, path, hosts_entry(s))


ns = Collection("ingress", install, hosts)
_settings.configure(
    ns,
    "ingress",
    {
        # Chart 4.10.0 ships controller v1.10.0, the guide's version.
        "chart_repo": "https://kubernetes.github.io/ingress-nginx",
        "chart": "ingress-nginx",
        "chart_version": "4.10.0",
        "release": "ingress-nginx",
        "namespace": "ingress-nginx",
        "timeout": 300,  # seconds helm waits for the controller
        # Step 7: the host the Ingresses answer to, and the hosts-file line for it.
        "host": "prism.local",
        "address": "127.0.0.1",
        "hosts_file": "/etc/hosts",
    },
)
