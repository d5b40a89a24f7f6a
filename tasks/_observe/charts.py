"""The guide's observability stack as Helm releases: kube-prometheus-stack and loki-stack, from
repositories that are added first (guide correction 14), at pinned versions, installed idempotently.

helm itself creates a new revision on every `upgrade`, even when nothing changed; here a release
that is deployed at the pinned chart version with the same values is left alone, so running the
install again changes nothing in the cluster.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any, NamedTuple

from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target

# The guide's local names for the two repositories; their URLs come from configuration.
PROMETHEUS_REPO = "prometheus-community"
GRAFANA_REPO = "grafana"

# The guide's values.
PROMETHEUS_VALUES: tuple[tuple[str, Any], ...] = (
    ("prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues", False),
)
LOKI_VALUES: tuple[tuple[str, Any], ...] = (
    ("grafana.enabled", False),
    ("promtail.enabled", True),
)

# The simulated cluster may hold no admission webhook and no aggregated API: nothing would
# ever answer them. kube-prometheus-stack is the only one of the two charts that creates any
# (loki-stack creates neither). Its operator serves TLS with the certificate the webhook patch
# job creates; without that job the Secret never exists, so TLS goes off too.
KWOK_PROMETHEUS_VALUES: tuple[tuple[str, Any], ...] = (
    ("prometheusOperator.admissionWebhooks.enabled", False),
    ("prometheusOperator.admissionWebhooks.patch.enabled", False),
    ("prometheusOperator.admissionWebhooks.deployment.enabled", False),
    ("prometheusOperator.tls.enabled", False),
)


# helm queries: read-only, so they run under --dry too; failures are handled by the caller
QUERY: dict[str, Any] = {"dry": False, "hide": True, "warn": True, "in_stream": False}


class Release(NamedTuple):
    name: str
    repo: str  # local repository name
    chart: str
    version: str
    values: tuple[tuple[str, Any], ...]

    @property
    def reference(self) -> str:
        return f"{self.repo}/{self.chart}"

    @property
    def chart_label(self) -> str:
        """What `helm list` shows in its chart column."""
        return f"{self.chart}-{self.version}"


def repositories(s: Settings) -> list[tuple[str, str]]:
    """(name, url) of every repository the releases need."""
    return [
        (PROMETHEUS_REPO, str(s.observe.prometheus_repo)),
        (GRAFANA_REPO, str(s.observe.grafana_repo)),
    ]


def releases(s: Settings, t: Target) -> list[Release]:
    """The two releases of the guide, in install order."""
    cfg = s.observe
    prometheus_values = PROMETHEUS_VALUES
    if t.provider == "kwok":
        prometheus_values += KWOK_PROMETHEUS_VALUES
    return [
        Release(
            str(cfg.prometheus_release),
            PROMETHEUS_REPO,
            "kube-prometheus-stack",
            str(cfg.prometheus_chart_version),
            prometheus_values,
        ),
        Release(
            str(cfg.loki_release),
            GRAFANA_REPO,
            "loki-stack",
            str(cfg.loki_chart_version),
            LOKI_VALUES,
        ),
    ]


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def set_flags(values: tuple[tuple[str, Any], ...]) -> list[str]:
    flags = []
    for key, value in values:
        flags += ["--set", f"{key}={_literal(value)}"]
    return flags


def nested(values: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The user-supplied values as `helm get values -o json` reports them after `--set`."""
    tree: dict[str, Any] = {}
    for key, value in values:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def upgrade_args(release: Release, timeout: int) -> list[str]:
    return [
        "upgrade",
        "--install",
        release.name,
        release.reference,
        "--version",
        release.version,
        "--create-namespace",
        "--wait",
        "--timeout",
        f"{timeout}s",
        *set_flags(release.values),
    ]


def add_repositories(c: Context, s: Settings) -> None:
    """`helm repo add` for every repository; --force-update re-reads each index (what the
    guide's `helm repo update` is for) and follows a changed URL."""
    for name, url in repositories(s):
        _command.run(c, ["helm", "repo", "add", name, url, "--force-update"], hide="stdout")


def deployed(c: Context, namespace: str) -> dict[str, dict[str, Any]]:
    """Releases in the namespace, whatever their status, by name."""
    result = _target.helm(c, "list", "--all", "-o", "json", namespace=namespace, **QUERY)
    if not result.ok:
        if c.config.run.dry:
            return {}  # a dry run may plan against a cluster that does not exist yet
        raise Exit(f"helm list failed: {_command.why(result)}", code=1)
    return {entry["name"]: entry for entry in json.loads(result.stdout or "[]") or []}


def current_values(c: Context, release: Release, namespace: str) -> dict[str, Any]:
    result = _target.helm(
        c, "get", "values", release.name, "-o", "json", namespace=namespace, **QUERY
    )
    if not result.ok:
        raise Exit(f"helm get values {release.name} failed: {_command.why(result)}", code=1)
    return json.loads(result.stdout or "null") or {}


def up_to_date(c: Context, release: Release, entry: dict[str, Any] | None, namespace: str) -> bool:
    if not entry or entry.get("status") != "deployed" or entry.get("chart") != release.chart_label:
        return False
    return current_values(c, release, namespace) == nested(release.values)


def install(c: Context, s: Settings, t: Target, timeout: int) -> None:
    """Add the repositories, then install or upgrade each release and wait for it, printing
    progress and the time each release took."""
    namespace = str(s.observe.namespace)
    add_repositories(c, s)
    found = deployed(c, namespace)
    for release in releases(s, t):
        started = time.monotonic()
        entry = found.get(release.name)
        status = str((entry or {}).get("status", ""))
        if status.startswith("pending-"):
            kubeconfig = ["--kubeconfig", t.kubeconfig] if t.kubeconfig else []
            rollback = ["helm", "--kube-context", t.context, *kubeconfig, "-n", namespace]
            raise Exit(
                f"release {release.name} is {status} (an earlier helm run was interrupted); "
                f"run `{shlex.join([*rollback, 'rollback', release.name])}` "
                "or `inv observe.uninstall`, then install again",
                code=1,
            )
        if up_to_date(c, release, entry, namespace):
            print(
                f"{release.name}: {release.chart_label} already deployed with these values "
                f"(revision {entry['revision'] if entry else '?'}); nothing to do"
            )
            continue
        verb = "upgrading" if entry else "installing"
        print(f"{release.name}: {verb} {release.reference} {release.version} ...", flush=True)
        result = _target.helm(
            c, *upgrade_args(release, timeout), namespace=namespace, warn=True, hide="stdout"
        )
        if not result.ok:
            raise Exit(
                f"helm could not install {release.name} ({release.chart_label}): "
                f"{_command.why(result)}; "
                "`inv observe.check` shows what is stuck, then run `inv observe.install` again",
                code=1,
            )
        if not c.config.run.dry:  # under --dry the command was only printed
            seconds = time.monotonic() - started
            print(f"{release.name}: {release.chart_label} ready in {seconds:.1f}s")


def uninstall(c: Context, s: Settings, t: Target, timeout: int) -> list[str]:
    """Remove the releases that exist (last installed first); returns their names."""
    namespace = str(s.observe.namespace)
    found = deployed(c, namespace)
    removed = []
    for release in reversed(releases(s, t)):
        if release.name not in found:
            print(f"{release.name}: not installed in namespace {namespace}; nothing to do")
            continue
        started = time.monotonic()
        _target.helm(
            c,
            "uninstall",
            release.name,
            "--wait",
            "--timeout",
            f"{timeout}s",
            namespace=namespace,
            hide="stdout",
        )
        removed.append(release.name)
        if not c.config.run.dry:
            print(f"{release.name}: uninstalled in {time.monotonic() - started:.1f}s")
    return removed
