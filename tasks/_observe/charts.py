"""The guide's observability stack as Helm releases: kube-prometheus-stack and loki-stack at pinned
versions (guide correction 14), installed idempotently, the way a Helm user would.

Each chart comes straight from its repository: `helm upgrade --install RELEASE CHART --repo URL
--version V -f manifests/observability/<release>-values.yaml`, as `ingress.install` installs
ingress-nginx. Nothing is added to the user's helm repositories (`helm repo add` would write their
global repositories.yaml, and could clash with names they use themselves); helm only keeps the
downloaded chart in its cache. Both URLs are settings, so a mirror takes their place; a chart
that cannot be fetched ends in one line naming the URL and that setting.

The values are YAML files beside the manifests; only the values that depend on the cluster
provider are `--set` here (KWOK_PROMETHEUS_VALUES).

helm itself creates a new revision on every `upgrade`, even when nothing changed; here a release
that is deployed at the pinned chart version with the same values is left alone, so running the
install again changes nothing in the cluster (and needs no network).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any, NamedTuple

from invoke import Context, Exit

from .._core import command as _command
from .._core import output as _output
from .._core import settings as _settings
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target

VALUES_DIR = _settings.PROJECT_ROOT / "manifests" / "observability"

# The simulated cluster may hold no admission webhook and no aggregated API: nothing would
# ever answer them. kube-prometheus-stack is the only one of the two charts that creates any
# (loki-stack creates neither). Its operator serves TLS with the certificate the webhook patch
# job creates; without that job the Secret never exists, so TLS goes off too. These depend on
# the provider, so they are `--set` flags added on kwok rather than lines of the values file.
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
    chart: str
    version: str
    repo: str  # the chart repository's URL
    repo_key: str  # the observe setting that holds that URL (where a mirror goes)
    values_file: Path
    sets: tuple[tuple[str, Any], ...] = ()  # provider-dependent values, as --set

    @property
    def chart_label(self) -> str:
        """What `helm list` shows in its chart column."""
        return f"{self.chart}-{self.version}"


def releases(s: Settings, t: Target) -> list[Release]:
    """The two releases of the guide, in install order."""
    cfg = s.observe
    return [
        Release(
            str(cfg.prometheus_release),
            "kube-prometheus-stack",
            str(cfg.prometheus_chart_version),
            str(cfg.prometheus_repo),
            "prometheus_repo",
            VALUES_DIR / "prometheus-values.yaml",
            KWOK_PROMETHEUS_VALUES if t.provider == "kwok" else (),
        ),
        Release(
            str(cfg.loki_release),
            "loki-stack",
            str(cfg.loki_chart_version),
            str(cfg.grafana_repo),
            "grafana_repo",
            VALUES_DIR / "loki-values.yaml",
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
    """`--set` values as the tree helm makes of them."""
    tree: dict[str, Any] = {}
    for key, value in values:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key (what helm does with -f, then --set)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def values_text(release: Release) -> str:
    try:
        return release.values_file.read_text(encoding="utf-8")
    except OSError as error:
        raise Exit(
            f"cannot read the values file {release.values_file}: {error.strerror}", code=1
        ) from None


def values(release: Release) -> dict[str, Any]:
    """The user-supplied values, as `helm get values -o json` reports them after the install:
    the values file, then the --set values on top."""
    import yaml  # only when installing: `inv --list` never pays for it

    try:
        loaded = yaml.safe_load(values_text(release)) or {}
    except yaml.YAMLError as error:
        raise Exit(
            f"{release.values_file} is not valid YAML: {' '.join(str(error).split())}", code=1
        ) from None
    if not isinstance(loaded, dict):
        raise Exit(f"{release.values_file} must be a mapping of chart values", code=1)
    return _merged(loaded, nested(release.sets))


def values_flag(c: Context, release: Release) -> tuple[list[str], str | None]:
    """`-f FILE` where helm runs on this machine. Over -H helm runs on the host, where this
    checkout's files are not: there the file's text goes on helm's standard input (`-f -`)."""
    if _command.is_remote(c):
        return ["-f", "-"], values_text(release)
    return ["-f", str(release.values_file)], None


def upgrade_args(release: Release, timeout: int, values_args: list[str]) -> list[str]:
    return [
        "upgrade",
        "--install",
        release.name,
        release.chart,
        "--repo",
        release.repo,
        "--version",
        release.version,
        "--create-namespace",
        "--wait",
        "--timeout",
        f"{timeout}s",
        *values_args,
        *set_flags(release.sets),
    ]


def fetch_args(release: Release) -> list[str]:
    """Fetches the pinned chart from its repository and nothing else: tells a chart that
    cannot be fetched from a release that could not be installed."""
    return [
        "helm",
        "show",
        "chart",
        release.chart,
        "--repo",
        release.repo,
        "--version",
        release.version,
    ]


def failure(c: Context, release: Release, result: Any) -> Exit:
    """Why `helm upgrade --install` failed, as one line with the next step."""
    fetched = _command.query(c, fetch_args(release))
    if not fetched.ok:
        var = _settings.env_var("observe", release.repo_key)
        return Exit(
            f"cannot fetch chart {release.chart} {release.version} from {release.repo} "
            f"({_command.why(fetched)}); to use a mirror of that repository, set {var} to its "
            "URL (in .env or the environment) and run `inv observe.install` again",
            code=1,
        )
    return Exit(
        f"helm could not install {release.name} ({release.chart_label}): "
        f"{_command.why(result)}; "
        "`inv observe.check` shows what is stuck, then run `inv observe.install` again",
        code=1,
    )


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
    return current_values(c, release, namespace) == values(release)


def install(c: Context, s: Settings, t: Target, timeout: int) -> None:
    """Install or upgrade each release from its repository and wait for it, printing progress
    and the time each release took."""
    namespace = str(s.observe.namespace)
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
            _output.say(
                f"{release.name}: {release.chart_label} already deployed with these values "
                f"(revision {entry['revision'] if entry else '?'}); nothing to do"
            )
            continue
        verb = "upgrading" if entry else "installing"
        _output.say(
            f"{release.name}: {verb} {release.chart} {release.version} from {release.repo} ..."
        )
        flags, text = values_flag(c, release)
        # helm's own output is hidden: on failure its error is in the one line `failure` makes
        result = _target.helm(
            c,
            *upgrade_args(release, timeout, flags),
            namespace=namespace,
            warn=True,
            hide=True,
            input=text,
        )
        if not result.ok:
            raise failure(c, release, result)
        if not c.config.run.dry:  # under --dry the command was only printed
            seconds = time.monotonic() - started
            _output.say(f"{release.name}: {release.chart_label} ready in {seconds:.1f}s", "green")


def uninstall(c: Context, s: Settings, t: Target, timeout: int) -> list[str]:
    """Remove the releases that exist (last installed first); returns their names."""
    namespace = str(s.observe.namespace)
    found = deployed(c, namespace)
    removed = []
    for release in reversed(releases(s, t)):
        if release.name not in found:
            _output.say(f"{release.name}: not installed in namespace {namespace}; nothing to do")
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
            _output.say(f"{release.name}: uninstalled in {time.monotonic() - started:.1f}s")
    return removed
