"""Deploy the Prism stack from manifests/ (kustomize overlays) in the guide's order."""

from __future__ import annotations

import json as _json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target
from ._core.calls import as_typed
from .cluster import create as cluster_create
from .cluster import next_questions
from .images import load as images_load

if TYPE_CHECKING:
    from ._observe.checks import Finding

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
    from ._core import command as _command
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
        # the questions before the tunnel, in one SSH session (none: the pre-task asked them)
        if _command.is_remote(c):
            _command.prefetch(c, next_questions(c, t))
        _guard.require_owned(c, t)  # the .env credentials go only where we may put them
    chosen = [step for step in _render.STEPS if step.name in steps]
    outcomes = _plan.run_plan(c, objects, chosen, wait)
    _plan.summarize(outcomes, time.monotonic() - started)


@task(
    name="all",
    pre=[as_typed(cluster_create), as_typed(images_load)],
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
    """Show what deploying the overlay would change; exit 1 when it would change something."""
    from ._core import output as _output
    from ._deploy import images as _images
    from ._deploy import plan as _plan
    from ._deploy import render as _render

    _target.require_reachable(c)
    enabled = _render.enabled_backends(_settings.load(c))
    objects = _render.plan_objects(c, _overlay(c, overlay), enabled, for_apply=False)
    objects = _images.follow_config(c, objects)
    # a deploy leaves the replica count of an autoscaled workload to its HPA: so does the diff
    scaled = _render.autoscaled(objects)
    objects = [_render.without_replicas(o) if _render.key(o) in scaled else o for o in objects]
    # kubectl diff runs `diff -u -N`; on a terminal in colour, as git shows it
    colour = {"KUBECTL_EXTERNAL_DIFF": "diff -u -N --color=always"} if _output.styled() else {}
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
        env=colour,
    )
    if result.exited == 0:
        print("no changes")
    elif result.exited == 1:  # as diff(1) and helmfile --detailed-exitcode: 1 means changes
        raise Exit(code=1)
    else:
        raise Exit(f"kubectl diff failed (exit {result.exited})", code=result.exited)


@task(help={"json": "Print a JSON document (keys in the README) instead of the table."})
def status(c, json=False):
    """Show every Prism workload (ready/desired, age) and whether the HPA gets metrics.

    Also each backend that backends.enabled names and the cluster does not run, and each one it
    runs that backends.enabled does not name."""
    from ._core import output as _output
    from ._deploy import render as _render
    from ._observe import checks as _checks

    enabled = _render.enabled_backends(_settings.load(c))
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
    items = _json.loads(result.stdout or "{}").get("items", [])
    rows = status_rows(items, datetime.now(UTC))
    backends = backend_rows(items, enabled)
    findings = (_checks.metrics_now(c, t) if items else []) + backend_findings(backends)
    if json:
        _output.print_json(
            {
                "cluster": t.name,
                "context": t.context,
                "workloads": rows,
                "backends": backends,
                "findings": [f._asdict() for f in findings],
            }
        )
        return
    if not items:
        print("no Prism workloads; run `inv deploy.all`")
        return
    unlisted = not_enabled(items, enabled)
    header = ("NAMESPACE", "KIND", "NAME", "READY", "AGE", "")
    table = [
        (r["namespace"], r["kind"], r["name"], f"{r['ready']}/{r['desired']}",
         _age(r["age_seconds"]), _note(r, (r["namespace"], r["name"]) in unlisted))
        for r in rows
    ]  # fmt: skip
    _output.print_table(header, table, ["" if r["is_ready"] else "yellow" for r in rows])
    # guide correction 15: an HPA without the metrics API never scales; say so where people look.
    # Then each backend where backends.enabled and the cluster disagree, with what to do.
    for finding in findings:
        print(finding.line())


def status_rows(items: list[dict], now: datetime) -> list[dict]:
    """One row per workload, the keys `deploy.status --json` documents."""
    from ._kube import readiness as _readiness

    rows = []
    for item in sorted(items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"])):
        meta, status = item["metadata"], item.get("status", {})
        created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        rows.append(
            {
                "namespace": meta["namespace"],
                "kind": item["kind"],
                "name": meta["name"],
                "ready": status.get("readyReplicas", 0),
                "desired": item["spec"].get("replicas", 1),
                "is_ready": _readiness.is_ready(item),
                "rollout": _readiness.rollout_state(item),
                "age_seconds": int((now - created).total_seconds()),
            }
        )
    return rows


def backend_rows(items: list[dict], enabled: list[str]) -> list[dict]:
    """`deploy.status --json`'s `backends`: each backend enabled (backends.enabled) or deployed
    (a workload labelled as that backend), with both answers."""
    from ._deploy import render as _render

    deployed = _render.backend_names(items)
    return [
        {"name": name, "enabled": name in enabled, "deployed": name in deployed}
        for name in sorted({*enabled, *deployed})
    ]


def backend_findings(backends: list[dict]) -> list[Finding]:
    """A finding for each backend where backends.enabled and the cluster disagree."""
    from ._observe import checks as _checks

    findings = []
    for backend in backends:
        name = backend["name"]
        if backend["enabled"] and not backend["deployed"]:
            detail, fix = "enabled, not deployed", "run `inv deploy.all`"
        elif backend["deployed"] and not backend["enabled"]:
            detail = "deployed, not enabled (backends.enabled)"
            fix = (
                f"add {name} to PRISM_BACKENDS_ENABLED, or remove it: "
                f"`inv backends.delete --only {name}`"
            )
        else:
            continue
        findings.append(_checks.Finding(_checks.WARNING, name, detail, fix, check="backends"))
    return findings


def not_enabled(items: list[dict], enabled: list[str]) -> set[tuple[str, str]]:
    """(namespace, name) of the backend workloads whose backend is not enabled."""
    from ._deploy import render as _render

    return {
        (item["metadata"]["namespace"], item["metadata"]["name"])
        for item in items
        if _render.backend_names([item]) - set(enabled)
    }


def _note(row: dict, unlisted: bool) -> str:
    """The table's last column: what is wrong with this workload, if anything."""
    notes = []
    if not row["is_ready"]:
        notes.append(f"not ready: {row['rollout']}")
    if unlisted:
        notes.append("not enabled (backends.enabled)")
    return "; ".join(notes)


def _age(seconds: int) -> str:
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
    from ._observe import forward as _forward
    from ._observe import verify as _verify

    _forward.require_local(c, "deploy.verify")
    t, stack = verify_stack(c, overlay)
    checks = _verify.checks(c, stack)
    if _guard.is_dry(c):
        for check in checks:
            print(
                f"would check: {check.name}" + (f" (skipped: {check.skip})" if check.skip else "")
            )
        return
    outcomes = _verify.run_all(checks)
    print(_verify.require_passed(outcomes, t.name))


def verify_stack(c: Context, overlay: str | None) -> tuple[_target.Target, Any]:
    """The reachable target, and what deploy.verify's checks need to know of its stack (also
    asked by chaos.backend-outage, for the backend's own check)."""
    from ._deploy import render as _render
    from ._observe import verify as _verify

    s = _settings.load(c)
    enabled = _render.enabled_backends(s)
    objects = _render.plan_objects(c, _overlay(c, overlay), enabled, for_apply=False)
    t = _target.require_reachable(c)
    postgres = "postgres" in enabled
    return t, _verify.Stack(
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
