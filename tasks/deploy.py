"""Deploy the Prism stack from manifests/ (kustomize overlays) in the guide's order."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target
from .cluster import create as cluster_create
from .images import load as images_load

OVERLAY_HELP = (
    "Overlay: a name under manifests/overlays or a kustomization directory path "
    "(default: the environment's; see PRISM_ENV)."
)
TIMEOUT_HELP = "Seconds each step may wait for readiness (default: deploy.timeout)."


def _overlay(c: Context, overlay: str | None) -> str:
    return overlay or _settings.load(c).overlay


def deploy_steps(
    c: Context, steps: tuple[str, ...], overlay: str | None, timeout: int | None
) -> None:
    """Render once, then run the chosen steps with their readiness waits and a timing table."""
    from ._core import guard as _guard
    from ._deploy import images as _images
    from ._deploy import plan as _plan
    from ._deploy import render as _render

    s = _settings.load(c)
    wait = _settings.seconds(timeout, s.deploy.timeout)
    started = time.monotonic()
    objects = _images.follow_config(
        c, _render.plan_objects(c, _overlay(c, overlay), only_backends=_render.enabled_backends(s))
    )
    t = _target.require_reachable(c)
    if not _guard.is_dry(c):
        _guard.require_owned(c, t)  # the .env credentials go only where we may put them
    chosen = [step for step in _render.STEPS if step.name in steps]
    outcomes = _plan.run_plan(c, objects, chosen, wait)
    _plan.summarize(outcomes, time.monotonic() - started)


@task(
    name="all",
    pre=[cluster_create, images_load],
    help={"overlay": OVERLAY_HELP, "timeout": TIMEOUT_HELP},
)
def all_(c, overlay=None, timeout=None):
    """Deploy everything: namespaces, backends, admin, proxy, runners, ingress, HPA."""
    from ._deploy import render as _render

    deploy_steps(c, _render.STEP_NAMES, overlay, timeout)


def _component_task(step: str, doc: str):  # type: ignore[no-untyped-def]
    @task(name=step, help={"overlay": OVERLAY_HELP, "timeout": TIMEOUT_HELP})
    def component(c, overlay=None, timeout=None):
        deploy_steps(c, (step,), overlay, timeout)

    component.__doc__ = doc
    component.body.__doc__ = doc
    return component


foundation = _component_task("foundation", "Apply namespaces, the local-storage class and Secrets.")
admin = _component_task("admin", "Deploy prism-admin (ConfigMap, claim, Deployment, Service).")
proxy = _component_task("proxy", "Deploy prism-proxy (LoadBalancer Service, Deployment).")
runners = _component_task("runners", "Deploy the four pattern runners.")
ingress = _component_task("ingress", "Apply the Ingress routes for prism.local.")
autoscaling = _component_task("autoscaling", "Apply the prism-proxy HorizontalPodAutoscaler.")


@task(
    help={
        "overlay": OVERLAY_HELP,
        "output": "Write the YAML to this file instead of standard output.",
    }
)
def render(c, overlay=None, output=None):
    """Render the final YAML of an overlay (Secrets are not included)."""
    from ._deploy import images as _images
    from ._deploy import render as _render

    if output and Path(output).is_dir():
        raise Exit(f"--output {output} is a directory; give a file name", code=1)
    enabled = _render.enabled_backends(_settings.load(c))
    objects = _images.follow_config(
        c, _render.plan_objects(c, _overlay(c, overlay), enabled, for_apply=False)
    )
    text = _render.to_yaml(objects)
    if output:
        from ._core import guard as _guard

        path = Path(output)
        _guard.write_atomically(path, text)  # no half-written file, no temp file left behind
        print(f"wrote {len(objects)} objects to {output}")
    else:
        print(text, end="")


@task(help={"overlay": OVERLAY_HELP})
def diff(c, overlay=None):
    """Show what deploying the overlay would change in the cluster."""
    from ._deploy import images as _images
    from ._deploy import plan as _plan
    from ._deploy import render as _render

    _target.require_reachable(c)
    enabled = _render.enabled_backends(_settings.load(c))
    objects = _images.follow_config(
        c, _render.plan_objects(c, _overlay(c, overlay), enabled, for_apply=False)
    )
    # a deploy leaves the replica count of an autoscaled workload to its HPA: so does the diff
    scaled = _render.autoscaled(objects)
    objects = [_render.without_replicas(o) if _render.key(o) in scaled else o for o in objects]
    result = _target.kubectl(
        c,
        "diff",
        "--server-side",
        f"--field-manager={_plan.FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        "-",
        input=_render.to_yaml(objects),
        dry=False,
        warn=True,
    )
    if result.exited == 0:
        print("no changes")
    elif result.exited != 1:  # kubectl diff: 1 means differences, >1 an error
        raise Exit(f"kubectl diff failed (exit {result.exited})", code=result.exited)


@task
def status(c):
    """Show every Prism workload (ready/desired, age) and whether the HPA gets metrics."""
    from ._observe import checks as _checks

    t = _target.require_reachable(c)
    result = _target.kubectl(
        c,
        "get",
        "deployments,statefulsets",
        "--all-namespaces",
        "-l",
        "app.kubernetes.io/part-of=prism",
        "-o",
        "json",
        dry=False,
        hide=True,
    )
    items = json.loads(result.stdout or "{}").get("items", [])
    if not items:
        print("no Prism workloads; run `inv deploy.all`")
        return
    print(format_status(items, datetime.now(UTC)))
    # guide correction 15: an HPA without the metrics API never scales; say so where people look.
    for finding in _checks.metrics_now(c, t):
        print(finding.line())


def format_status(items: list[dict], now: datetime) -> str:
    from ._kube import readiness as _readiness

    rows = [("NAMESPACE", "KIND", "NAME", "READY", "AGE", "")]
    for item in sorted(items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"])):
        meta, status = item["metadata"], item.get("status", {})
        created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        ready = f"{status.get('readyReplicas', 0)}/{item['spec'].get('replicas', 1)}"
        mark = "" if _readiness.is_ready(item) else "not ready"
        rows.append(
            (meta["namespace"], item["kind"], meta["name"], ready, _age(now - created), mark)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        + f"  {row[5]}".rstrip()
        for row in rows
    )


def _age(delta) -> str:  # type: ignore[no-untyped-def]
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@task(
    help={
        "overlay": OVERLAY_HELP,
        "yes": "Do not ask for confirmation.",
    }
)
def delete(c, overlay=None, yes=False):
    """Delete every object of the overlay from the cluster (asks first unless --yes)."""
    from ._deploy import render as _render

    _target.require_reachable(c)
    t = _target.resolve(c)
    from ._core import guard as _guard

    _guard.require_owned(c, t)
    _guard.confirm(f"delete the Prism stack from cluster {t.name}?", yes)
    # every backend there could be, enabled or not: what was deployed before goes too
    every = _render.available_backends()
    objects = _render.plan_objects(c, _overlay(c, overlay), every, for_apply=False)
    keep = {"Namespace", "StorageClass"}
    doomed = [o for o in objects if o["kind"] not in keep]
    _target.kubectl(
        c,
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        "-",
        input=_render.to_yaml(doomed),
    )
    claims = [o["metadata"] for o in doomed if o["kind"] == "PersistentVolumeClaim"]
    if claims and t.provider == "kwok":
        from ._providers import kwok as _kwok

        volumes = [_kwok.volume_name(m.get("namespace", "default"), m["name"]) for m in claims]
        # waited for: a deploy right after must find them gone, not Terminating
        _target.kubectl(c, "delete", "pv", *volumes, "--ignore-not-found", "--timeout=120s")


@task(
    help={
        "app": "The workload: prism-admin, prism-proxy, a runner or a backend (redis, ...).",
        "timeout": "Seconds to wait for the new pods to be Ready (default: deploy.timeout).",
    }
)
def restart(c, app, timeout=None):
    """Restart a workload's pods (a rollout restart) and wait until the new ones are Ready."""
    from ._core import guard as _guard
    from ._deploy import plan as _plan

    s = _settings.load(c)
    wait = _settings.seconds(timeout, s.deploy.timeout)
    started = time.monotonic()
    t = _target.require_reachable(c)
    if not _guard.is_dry(c):
        _guard.require_owned(c, t)
    kind, namespace, name = _plan.restart(c, app, wait)
    if not _guard.is_dry(c):
        print(
            f"restarted {kind} {namespace}/{name}: new pods Ready in {time.monotonic() - started:.1f}s"
        )


@task(help={"overlay": OVERLAY_HELP})
def verify(c, overlay=None):
    """Run the guide's verification checks on the running stack; exit 1 if any fails.

    Workloads Ready, admin health, the proxy's gRPC services and metrics, each enabled backend
    in its own protocol (README: "Check that it works")."""
    from ._core import guard as _guard
    from ._deploy import render as _render
    from ._observe import forward as _forward
    from ._observe import verify as _verify

    _forward.require_local(c, "deploy.verify")
    s = _settings.load(c)
    enabled = _render.enabled_backends(s)
    objects = _render.plan_objects(c, _overlay(c, overlay), enabled, for_apply=False)
    t = _target.require_reachable(c)
    postgres = "postgres" in enabled
    stack = _verify.Stack(
        provider=t.provider,
        backends=tuple(enabled),
        has_ingress=any(o["kind"] == "Ingress" for o in objects),
        ingress_host=str(s.ingress.host),
        http_port=s.cluster_int("http_port"),
        grpc_port=s.cluster_int("grpc_port"),
        postgres_port=int(s.backup.postgres_port),
        redis_port=int(s.backup.redis_port),
        postgres_user=s.secret("PRISM_POSTGRES_USER") if postgres else "",
        postgres_db=s.secret("PRISM_POSTGRES_DB") if postgres else "",
        postgres_password=s.secret("PRISM_POSTGRES_PASSWORD") if postgres else "",
    )
    checks = _verify.checks(c, stack)
    if _guard.is_dry(c):
        for check in checks:
            print(
                f"would check: {check.name}" + (f" (skipped: {check.skip})" if check.skip else "")
            )
        return
    outcomes = _verify.run_all(checks)
    print(_verify.require_passed(outcomes, t.name))


ns = Collection(
    "deploy",
    all_,
    foundation,
    admin,
    proxy,
    runners,
    ingress,
    autoscaling,
    render,
    diff,
    status,
    delete,
    restart,
    verify,
)
_settings.configure(
    ns,
    "deploy",
    {
        "overlay": "",  # empty: the environment's overlay
        "timeout": 300,  # seconds one step may wait for readiness
    },
)
