"""Look at the running stack and install the guide's observability stack (Prometheus, Grafana,
Loki) with Helm; `observe.check` runs the guide's troubleshooting checks and names the fixes.

The charts come from their repositories with `helm --repo` (nothing is added to the user's helm
repositories) and take their values from manifests/observability/ (tasks/_observe/charts.py)."""

from __future__ import annotations

import shlex
import time

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target

NAMESPACES = ("prism", "prism-backends")
TIMEOUT_HELP = "Seconds helm waits for each release (default: observe.timeout)."


def _settings_checked(c: Context) -> _settings.Settings:
    """Configuration with the observe section checked, so helm never sees a bad value."""
    s = _settings.load(c)
    cfg = s.observe
    for key in ("prometheus_repo", "grafana_repo"):
        url = str(cfg[key])
        if not url.startswith(("http://", "https://")):
            var = _settings.env_var("observe", key)
            raise Exit(f"{var}={url!r} is not an http(s) chart repository URL; set it to one")
    for key in ("namespace", "prometheus_release", "loki_release"):
        if not str(cfg[key]).strip():
            raise Exit(f"{_settings.env_var('observe', key)} is empty; set a name (or unset it)")
    for key in ("prometheus_chart_version", "loki_chart_version"):
        if not str(cfg[key]).strip():
            raise Exit(
                f"{_settings.env_var('observe', key)} is empty; pin a chart version "
                "(see .env.example for the tested one)"
            )
    if cfg.prometheus_release == cfg.loki_release:
        raise Exit(
            f"PRISM_OBSERVE_PROMETHEUS_RELEASE and PRISM_OBSERVE_LOKI_RELEASE are both "
            f"{cfg.loki_release!r}; give the two releases different names"
        )
    return s


@task(default=True, aliases=["pods"])
def status(c):
    """Show the stack's pods, services and ingresses, the observability releases and metrics."""
    from ._core import output as _output
    from ._observe import charts as _charts
    from ._observe import checks as _checks

    t = _target.require_reachable(c)
    s = _settings.load(c)
    for namespace in NAMESPACES:
        # kubectl's blocks do not say whose they are (and an empty namespace prints nothing here)
        _output.say(f"namespace {namespace}:", "bold")
        _target.kubectl(c, "get", "pods,svc,ingress", "-o", "wide", namespace=namespace, dry=False)
    namespace = str(s.observe.namespace)
    try:
        found = _charts.deployed(c, namespace)
    except Exit as error:  # no helm here: the rest of the status still helps
        _output.say(f"observability: cannot list releases ({error.message})", "yellow")
        found = None
    if found is not None:
        wanted = [r.name for r in _charts.releases(s, t)]
        shown = [
            f"{name} {found[name]['chart']} {found[name]['status']} "
            f"(revision {found[name]['revision']})"
            if name in found
            else f"{name} not installed"
            for name in wanted
        ]
        hint = "" if all(n in found for n in wanted) else "; run `inv observe.install`"
        _output.say(f"observability (namespace {namespace}): {', '.join(shown)}{hint}")
    for finding in _checks.metrics_now(c, t):
        _output.say(finding.line(), _checks.STYLES[finding.severity])


@task(help={"timeout": TIMEOUT_HELP})
def install(c, timeout=None):
    """Install (or upgrade to) the pinned kube-prometheus-stack and loki-stack charts and wait."""
    from ._core import guard as _guard
    from ._core import output as _output
    from ._observe import charts as _charts

    s = _settings_checked(c)
    seconds = _settings.seconds(timeout, s.observe.timeout)
    t = _target.require_reachable(c)
    if not _guard.is_dry(c):
        _guard.require_owned(c, t)  # releases, CRDs and webhooks go only where we may put them
    started = time.monotonic()
    _charts.install(c, s, t, seconds)
    if c.config.run.dry:
        _output.say("dry run: the commands above were printed, nothing was installed")
        return
    _output.say(
        f"observability stack ready in namespace {s.observe.namespace} of cluster {t.name} "
        f"({time.monotonic() - started:.1f}s); Grafana: `inv observe.grafana`",
        "green",
    )


@task(
    help={
        "yes": "Do not ask for confirmation (required when there is no terminal).",
        "timeout": "Seconds helm waits for each release to be removed (default: observe.timeout).",
    }
)
def uninstall(c, yes=False, timeout=None):
    """Uninstall the Prometheus and Loki releases (asks first unless --yes)."""
    from ._core import guard as _guard
    from ._core import output as _output
    from ._observe import charts as _charts

    s = _settings_checked(c)
    seconds = _settings.seconds(timeout, s.observe.timeout)
    t = _target.require_reachable(c)
    _guard.require_owned(c, t)
    names = " and ".join(r.name for r in _charts.releases(s, t))
    _guard.confirm(
        f"uninstall {names} from namespace {s.observe.namespace} of cluster {t.name}?", yes
    )
    removed = _charts.uninstall(c, s, t, seconds)
    if str(s.observe.prometheus_release) in removed:
        _output.say(
            "helm keeps the CRDs of kube-prometheus-stack (*.monitoring.coreos.com); "
            "delete them by hand if nothing else uses them"
        )


@task(help={"port": "Local port for Grafana (default: observe.grafana_port, 3000)."})
def grafana(c, port=None):
    """Print how to reach Grafana: the port-forward command and where its credentials are."""
    s = _settings_checked(c)
    t = _target.resolve(c)
    local = _settings.port(port, s.observe.grafana_port)
    namespace = str(s.observe.namespace)
    service = f"{s.observe.prometheus_release}-grafana"  # the grafana subchart's full name
    kubectl = ["kubectl", *_target.kube_flags(t), "-n", namespace]
    forward = shlex.join([*kubectl, "port-forward", f"svc/{service}", f"{local}:80"])
    secret = shlex.join(
        [*kubectl, "get", "secret", service, "-o", "jsonpath={.data.admin-password}"]
    )
    print(f"forward:  {forward}")
    print(f"open:     http://localhost:{local}")
    print(
        "login:    admin / the kube-prometheus-stack chart's default grafana.adminPassword "
        "(`prom-operator`, the guide's) unless you set your own"
    )
    print(f"password: {secret} | base64 -d")
    if t.provider == "kwok":
        print("note:     on the simulated cluster no Grafana runs; use this on k3d")


@task(help={"json": "Print one JSON document (cluster, findings, problems, warnings) instead."})
def check(c, json=False):
    """Run the guide's troubleshooting checks; one line per finding with its fix."""
    from ._core import output as _output
    from ._observe import checks as _checks

    s = _settings_checked(c)
    t = _target.require_reachable(c)
    ours = {name.strip() for name in str(s.images.names).split(",") if name.strip()}
    findings = _checks.run_all(c, t, str(s.observe.namespace), ours, str(s.observe.dns_image))
    problems = sum(f.severity == _checks.PROBLEM for f in findings)
    warnings = sum(f.severity == _checks.WARNING for f in findings)
    if json:
        _output.print_json(_checks.document(t.name, findings))
    else:
        for finding in findings:
            _output.say(finding.line(), _checks.STYLES[finding.severity])
    if problems:
        raise Exit(
            f"{problems} problem(s), {warnings} warning(s) on cluster {t.name}; "
            "apply the fixes above and run `inv observe.check` again",
            code=1,
        )
    if not json:
        _output.say(f"no problems on cluster {t.name} ({warnings} warning(s))", "green")


@task(
    help={
        "app": "The workload: prism-admin, prism-proxy, a runner or a backend (redis, ...).",
        "follow": "Keep reading, and add pods that start later, until Ctrl-C.",
        "since": "Only lines newer than this (30s, 5m, 1h30m, 2d).",
        "tail": "Only the last N lines of each pod (default: all).",
    }
)
def logs(c, app, follow=False, since="", tail=""):
    """Show the logs of every pod of a workload, interleaved, each line prefixed with its pod."""
    from ._observe import logs as _logs

    seconds = _logs.duration(since) if since else None
    try:
        lines = int(tail) if str(tail).strip() else -1
    except ValueError:
        lines = -2
    if lines < 0 and str(tail).strip():
        raise Exit(f"--tail {tail}: give a number of lines (0 or more)", code=1)
    _target.require_reachable(c)
    _logs.show(c, app, follow, seconds, lines)


@task(
    help={"services": "Comma-separated Services, e.g. prism-admin,prism-proxy (the guide's two)."}
)
def forward(c, services):
    """Forward every port of the Services to this machine until Ctrl-C; print the URLs."""
    import contextlib

    from ._observe import forward as _forward

    _forward.require_local(c, "observe.forward")
    names = [n.strip() for n in str(services).split(",") if n.strip()]
    if not names:
        raise Exit("name at least one Service, e.g. `inv observe.forward prism-proxy`", code=1)
    t = _target.require_reachable(c)
    plans = [_forward.plan(c, t, name) for name in names]
    if c.config.run.dry:
        for namespace, name, pairs in plans:
            spec = " ".join(f"{local or ''}:{remote}" for local, remote in pairs)
            print(f"would forward {namespace}/svc/{name} {spec}")
        return
    with contextlib.ExitStack() as stack:
        forwards = [
            stack.enter_context(_forward.forwarding(c, namespace, f"svc/{name}", pairs))
            for namespace, name, pairs in plans
        ]
        for fwd in forwards:
            for remote, local in sorted(fwd.ports.items()):
                print(f"{fwd.namespace}/{fwd.resource}:{remote} -> http://127.0.0.1:{local}")
        print("forwarding; Ctrl-C to stop", flush=True)
        try:
            _forward.hold(forwards)
        except KeyboardInterrupt:
            print("stopped forwarding")


ns = Collection("observe", status, install, uninstall, grafana, check, logs, forward)
_settings.configure(
    ns,
    "observe",
    {
        "namespace": "observability",
        # guide correction 14: the chart repositories, used with `helm --repo` (never added to the
        # user's helm repositories); either URL can point at a mirror (or the tests' loopback one).
        "prometheus_repo": "https://prometheus-community.github.io/helm-charts",
        "grafana_repo": "https://grafana.github.io/helm-charts",
        # Pinned charts: kube-prometheus-stack 67.8.0 (Prometheus Operator v0.79.2); loki-stack
        # 2.10.2 is the last release of that chart (upstream deprecated it; the guide uses it).
        "prometheus_chart_version": "67.8.0",
        "loki_chart_version": "2.10.2",
        # The guide's release names; Grafana's Service is <prometheus_release>-grafana.
        "prometheus_release": "prometheus",
        "loki_release": "loki",
        "timeout": 600,  # seconds helm waits for each release
        "grafana_port": 3000,
        # observe.check's DNS test pod (k3d only); busybox as in the guide, pinned.
        "dns_image": "busybox:1.36",
    },
)
