"""`deploy.all` against the simulated cluster: the whole stack, idempotent, clear failures."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from invoke import Exit
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

GUIDE_WORKLOADS = {
    ("prism-backends", "StatefulSet", "redis"),
    ("prism-backends", "StatefulSet", "nats"),
    ("prism-backends", "StatefulSet", "minio"),
    ("prism-backends", "StatefulSet", "postgres"),
    ("prism", "Deployment", "prism-admin"),
    ("prism", "Deployment", "prism-proxy"),
    ("prism", "StatefulSet", "keyvalue-runner"),
    ("prism", "Deployment", "consumer-runner"),
    ("prism", "Deployment", "producer-runner"),
    ("prism", "StatefulSet", "mailbox-runner"),
}
STEPS = ("foundation", "backends", "admin", "proxy", "runners", "ingress", "autoscaling")


def workloads(cluster: SimCluster) -> dict[tuple[str, str, str], dict]:
    items = cluster.get("deployments,statefulsets", "-A", "-l", "app.kubernetes.io/part-of=prism")[
        "items"
    ]
    return {(i["metadata"]["namespace"], i["kind"], i["metadata"]["name"]): i for i in items}


def resource_versions(cluster: SimCluster) -> dict[str, str]:
    versions = {}
    for scope in (["-n", "prism"], ["-n", "prism-backends"], []):
        kinds = "all,configmaps,secrets,pvc,ingress,hpa" if scope else "pv,storageclass,namespaces"
        for item in cluster.get(kinds, *scope)["items"]:
            meta = item["metadata"]
            versions[f"{item['kind']}/{meta.get('namespace', '')}/{meta['name']}"] = meta[
                "resourceVersion"
            ]
    return versions


APPLIES = re.compile(r"^apiserver_request_total\{([^}]*)\} (\d+)$", re.M)


def apply_requests(cluster: SimCluster) -> dict[str, int]:
    """How many server-side applies the API server has answered, dry runs apart (its own
    `apiserver_request_total` metric, by the `verb` and `dry_run` labels)."""
    counts = {"applied": 0, "dry-run": 0}
    for labels, count in APPLIES.findall(cluster.kubectl("get", "--raw", "/metrics").stdout):
        if 'verb="APPLY"' in labels:
            counts["applied" if 'dry_run=""' in labels else "dry-run"] += int(count)
    return counts


@pytest.fixture(scope="module")
def deployed(sim_cluster: SimCluster) -> str:
    """The ci overlay deployed from nothing (other modules may have deployed it before: it is
    deleted first); yields the output of that run."""
    cleared = sim_cluster.inv("deploy.delete", "--yes", "--overlay", "ci")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    result = sim_cluster.inv("cluster.create", "deploy.all")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_workload_of_the_guide_is_ready(sim_cluster: SimCluster, deployed: str) -> None:
    found = workloads(sim_cluster)
    assert set(found) >= GUIDE_WORKLOADS
    for key in GUIDE_WORKLOADS:
        spec, status = found[key]["spec"], found[key]["status"]
        assert status.get("readyReplicas") == spec["replicas"], key


def summary_table(output: str) -> list[list[str]]:
    """The rows of the table a deploy ends with (plain output), header first."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["step", "seconds"])
    return [line.split() for line in lines[start:]]


def test_each_step_reports_its_time_and_what_it_changed(deployed: str) -> None:
    table = summary_table(deployed)
    assert table[0] == ["step", "seconds", "created", "configured", "unchanged"]
    assert [row[0] for row in table[1:-1]] == list(STEPS)
    assert all(float(row[1]) >= 0 for row in table[1:])
    total = table[-1]
    assert total[0] == "total" and sum(map(int, total[2:])) >= 30  # the ci overlay: 32 objects
    assert "✓ admin (" in deployed  # each step's line, plain
    # and under it the objects it created, by namespace/kind/name
    created = re.search(r"^✓ admin \(.*\)\n  created: (.*)$", deployed, re.M)
    assert created and "prism/deployment/prism-admin" in created[1].split(", "), deployed


def test_claims_of_the_stack_are_bound(sim_cluster: SimCluster, deployed: str) -> None:
    claims = sim_cluster.get("pvc", "-A")["items"]
    ours = {
        c["metadata"]["name"]: c for c in claims if c["metadata"]["namespace"].startswith("prism")
    }
    assert {"data-redis-0", "data-postgres-0", "data-minio-0", "prism-admin-data"} <= set(ours)
    assert all(c["status"]["phase"] == "Bound" for c in ours.values())


def test_credentials_arrive_as_secrets_from_dotenv(sim_cluster: SimCluster, deployed: str) -> None:
    import base64

    secret = sim_cluster.get("secret", "postgres-credentials", "-n", "prism-backends")
    assert base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode() == "pg-pass"


def test_rerun_changes_nothing_and_says_so(sim_cluster: SimCluster, deployed: str) -> None:
    """Not even a dry run: the ledger of the run before shows every object is as it left it
    (tests/offline/test_deploy_ledger.py), after one run that records the autoscaled proxy as
    re-applied (its first apply set the replica count, every later one leaves it out)."""
    sim_cluster.inv("deploy.all")
    before, applies = resource_versions(sim_cluster), apply_requests(sim_cluster)
    assert applies["applied"] > 0 and applies["dry-run"] > 0  # the metric counts the deploys
    result = sim_cluster.inv("deploy.all")
    assert result.returncode == 0, result.stderr
    assert resource_versions(sim_cluster) == before
    assert apply_requests(sim_cluster) == applies
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"✓ nothing changed: \d+ objects as deployed, every workload Ready \(\d+\.\ds\)", last
    ), result.stdout
    assert "seconds" not in result.stdout  # no table of 0.0s


def test_a_change_is_reported_as_configured_and_diff_exits_1_until_deployed(
    sim_cluster: SimCluster, deployed: str
) -> None:
    """diff's exit codes are diff(1)'s: 0 nothing to change, 1 changes (helmfile's
    --detailed-exitcode); the deploy that follows names what it configured."""
    sim_cluster.kubectl("scale", "deployment/prism-admin", "-n", "prism", "--replicas=3")
    changed = sim_cluster.inv("deploy.diff")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "-  replicas: 3" in changed.stdout and "+  replicas: 1" in changed.stdout
    assert "\x1b[" not in changed.stdout  # not a terminal: no colour
    applied = sim_cluster.inv("deploy.all", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    rows = {row[0]: row for row in summary_table(applied.stdout)}
    assert rows["admin"][2:4] == ["0", "1"]  # the Deployment configured
    assert int(rows["admin"][4]) >= 1  # the rest of the step as it was
    assert rows["total"][3] == "1"
    assert "\n  configured: prism/deployment/prism-admin\n" in applied.stdout  # named
    same = sim_cluster.inv("deploy.diff")
    assert same.returncode == 0 and same.stdout.strip().endswith("no changes")


def test_a_drifted_object_is_put_back_while_every_workload_is_ready(
    sim_cluster: SimCluster, deployed: str
) -> None:
    """The re-run path (everything Ready) applies only objects whose dry run differs from what
    is stored: an edit made behind the deploy's back is such a difference, and is undone."""
    name = "prism-admin-config"
    original = sim_cluster.get("configmap", name, "-n", "prism")["data"]
    key = sorted(original)[0]
    sim_cluster.kubectl(
        "patch", "configmap", name, "-n", "prism", "--type=merge",
        "-p", json.dumps({"data": {key: "edited by hand"}}),
    )  # fmt: skip
    applied = sim_cluster.inv("deploy.all", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sim_cluster.get("configmap", name, "-n", "prism")["data"] == original
    rows = {row[0]: row for row in summary_table(applied.stdout)}
    assert rows["total"][3] == "1", applied.stdout  # one object configured, the rest as it was
    assert f"\n  configured: prism/configmap/{name}\n" in applied.stdout  # and named
    again = sim_cluster.inv("deploy.all")
    assert again.stdout.strip().splitlines()[-1].startswith("✓ nothing changed"), again.stdout


def test_an_edit_under_our_own_field_manager_is_put_back_too(
    sim_cluster: SimCluster, deployed: str
) -> None:
    """An apply made with the deploy's own field manager (as `deploy.diff`'s command would)
    keeps every field ours and changes only a value: the ledger's evidence covers the values
    of the fields we own, not only which ones, so the deploy still finds and undoes it."""
    name = "prism-admin-config"

    def ours(config: dict) -> dict:
        entries = config["metadata"]["managedFields"]
        return next(e["fieldsV1"] for e in entries if e["manager"] == "prism-tasks")

    shown = ("configmap", name, "-n", "prism", "--show-managed-fields")
    config = sim_cluster.get(*shown)
    original, key = config["data"], sorted(config["data"])[0]
    meta = {k: config["metadata"][k] for k in ("name", "namespace", "labels", "annotations")
            if k in config["metadata"]}  # fmt: skip
    edited = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
              "data": {**original, key: "edited under our name"}}  # fmt: skip
    sim_cluster.kubectl(
        "apply", "--server-side", "--field-manager=prism-tasks", "--force-conflicts", "-f", "-",
        input=json.dumps(edited),
    )  # fmt: skip
    assert ours(sim_cluster.get(*shown)) == ours(config)  # the same fields, still ours
    applied = sim_cluster.inv("deploy.all", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sim_cluster.get("configmap", name, "-n", "prism")["data"] == original
    assert f"\n  configured: prism/configmap/{name}\n" in applied.stdout


def test_status_json_has_the_documented_keys(sim_cluster: SimCluster, deployed: str) -> None:
    result = sim_cluster.inv("deploy.status", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"cluster", "context", "workloads", "backends", "findings"}
    assert document["cluster"] == "prism-ci" and document["context"] == "kwok-prism-ci"
    backends = {b["name"]: (b["enabled"], b["deployed"]) for b in document["backends"]}
    for name in ("redis", "nats", "minio", "postgres"):  # backends.enabled's default, deployed
        assert backends[name] == (True, True), document["backends"]
    rows = {(w["namespace"], w["kind"], w["name"]): w for w in document["workloads"]}
    assert set(rows) >= GUIDE_WORKLOADS
    admin = rows[("prism", "Deployment", "prism-admin")]
    assert set(admin) == {
        "namespace", "kind", "name", "ready", "desired", "is_ready", "rollout", "age_seconds"
    }  # fmt: skip
    assert admin["ready"] == admin["desired"] == 1 and admin["is_ready"] is True
    assert admin["rollout"] == "1 of 1 updated replicas available"
    assert {f["subject"] for f in document["findings"]} >= {"metrics-server"}
    assert set(document["findings"][0]) == {"severity", "check", "subject", "detail", "fix"}


def test_status_table_lists_every_workload(sim_cluster: SimCluster, deployed: str) -> None:
    result = sim_cluster.inv("deploy.status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "NAME", "READY", "AGE"]
    assert {tuple(line.split()[:3]) for line in lines[1:]} >= GUIDE_WORKLOADS
    assert "not ready" not in result.stdout
    assert "metrics-server: no v1beta1.metrics.k8s.io API on the simulated cluster" in result.stdout
    assert "an HPA (deploy.autoscaling) would never scale" in result.stdout  # ci: no HPA


def test_diff_after_deploy_shows_no_changes(sim_cluster: SimCluster, deployed: str) -> None:
    result = sim_cluster.inv("deploy.diff")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no changes")


def broken_overlay(tmp_path: Path, patch: str = "", extra: str = "") -> Path:
    """The ci overlay with a patch on top, or with one more resource file, or both."""
    overlay = tmp_path / "broken"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.mkdir()
    ci = os.path.relpath(
        Path(__file__).resolve().parents[2] / "manifests" / "overlays" / "ci", overlay
    )
    kustomization = f"resources:\n- {ci}\n"
    if extra:
        kustomization += "- extra.yaml\n"
        (overlay / "extra.yaml").write_text(extra)
    if patch:
        kustomization += "patches:\n- path: patch.yaml\n"
        (overlay / "patch.yaml").write_text(patch)
    (overlay / "kustomization.yaml").write_text(kustomization)
    return overlay


UNSCHEDULABLE_REDIS = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: prism-backends}
spec:
  template:
    spec:
      nodeSelector: {prism.example/no-such-node: "true"}
"""


def test_backend_never_ready_stops_with_object_events_and_hint_then_rerun_converges(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    overlay = broken_overlay(tmp_path, UNSCHEDULABLE_REDIS)
    result = sim_cluster.inv("deploy.all", "--overlay", str(overlay), "--timeout", "8")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "backends: statefulset prism-backends/redis not Ready after" in result.stderr
    assert "FailedScheduling" in result.stderr
    assert "hint: no node can run this pod" in result.stderr
    assert "runners      skipped" in result.stdout  # dependents do not start on a broken base

    fixed = sim_cluster.inv("deploy.all", "--timeout", "60")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    redis = workloads(sim_cluster)[("prism-backends", "StatefulSet", "redis")]
    assert redis["status"]["readyReplicas"] == 1
    assert "nodeSelector" not in redis["spec"]["template"]["spec"]


MISSPELLED_FIELD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: prism-proxy, namespace: prism}
spec:
  replicaz: 3
"""


def test_a_misspelled_field_is_rejected_by_strict_validation_and_nothing_of_it_lands(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    """kubectl's default (`--validate=strict`) holds for the API apply too: an unknown field is
    an error naming the object, never silently dropped."""
    before = resource_versions(sim_cluster)
    overlay = broken_overlay(tmp_path, MISSPELLED_FIELD)
    result = sim_cluster.inv("deploy.all", "--overlay", str(overlay))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the API server rejected Deployment prism/prism-proxy: " in last, last
    assert ".spec.replicaz: field not declared in schema" in last
    assert resource_versions(sim_cluster) == before


UNKNOWN_KIND = """
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
  namespace: prism
  labels: {app.kubernetes.io/component: foundation}
"""


def test_a_kind_the_cluster_does_not_serve_is_one_clear_line(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    overlay = broken_overlay(tmp_path, extra=UNKNOWN_KIND)
    result = sim_cluster.inv("deploy.foundation", "--overlay", str(overlay))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "the cluster serves no Widget in example.com/v1" in result.stderr


def test_an_object_that_belongs_to_no_step_stops_the_deploy_before_anything_is_applied(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    overlay = broken_overlay(
        tmp_path,
        extra="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: prism}\n",
    )
    result = sim_cluster.inv("deploy.all", "--overlay", str(overlay))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "ConfigMap prism/extra belongs to no step" in result.stderr
    assert "extra" not in sim_cluster.kubectl("get", "configmaps", "-n", "prism").stdout


MISSING_PROXY_IMAGE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: prism-proxy, namespace: prism}
spec:
  template:
    spec:
      schedulerName: no-scheduler  # stays unscheduled, so kwok leaves its status to the test
"""


def play_kubelet_failing_to_pull(cluster: SimCluster, image: str, stop: threading.Event) -> None:
    """What a kubelet reports for an image it cannot pull; the simulated cluster has no kubelet
    (and no images), so the test writes that status itself."""
    status = {
        "status": {
            "containerStatuses": [
                {
                    "name": "prism-proxy",
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                }
            ]
        }
    }
    while not stop.wait(0.2):
        for pod in cluster.get("pods", "-n", "prism", "-l", "app=prism-proxy")["items"]:
            if pod["spec"]["containers"][0]["image"] == image and not pod["status"].get(
                "containerStatuses"
            ):
                cluster.kubectl(
                    "patch", "pod", pod["metadata"]["name"], "-n", "prism",
                    "--subresource=status", "--type=merge", "-p", json.dumps(status),
                )  # fmt: skip


def test_an_image_that_does_not_exist_stops_with_the_pod_and_the_fix_then_rerun_converges(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    overlay = broken_overlay(tmp_path, MISSING_PROXY_IMAGE)
    stop = threading.Event()
    kubelet = threading.Thread(
        target=play_kubelet_failing_to_pull,
        args=(sim_cluster, "prism-proxy:does-not-exist", stop),
        daemon=True,
    )
    kubelet.start()
    try:
        # a tag never built: the configuration's tag reaches every Prism image of the manifests
        result = sim_cluster.inv(
            "deploy.all", "--overlay", str(overlay), "--timeout", "6",
            PRISM_IMAGES_TAG="does-not-exist",
        )  # fmt: skip
    finally:
        stop.set()
        kubelet.join()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "proxy: deployment prism/prism-proxy not Ready after" in result.stderr
    assert "Pending ErrImagePull" in result.stderr
    assert (
        "hint: the image (prism-proxy:does-not-exist) is not in the cluster: "
        "run `inv images.load`" in result.stderr
    )

    fixed = sim_cluster.inv("deploy.all", "--timeout", "60")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    proxy = workloads(sim_cluster)[("prism", "Deployment", "prism-proxy")]
    assert proxy["status"]["readyReplicas"] == proxy["spec"]["replicas"]
    assert proxy["spec"]["template"]["spec"]["containers"][0]["image"] != (
        "prism-proxy:does-not-exist"
    )


def test_wrong_overlay_name_is_one_clear_line(sim_cluster: SimCluster) -> None:
    result = sim_cluster.inv("deploy.all", "--overlay", "prdo")
    assert result.returncode != 0
    assert "unknown overlay 'prdo'; choose one of: ci, dev, local, prod, staging" in result.stderr


def test_dry_run_prints_the_commands_and_changes_nothing(
    sim_cluster: SimCluster, deployed: str
) -> None:
    before = resource_versions(sim_cluster)
    result = sim_cluster.inv("--dry", "cluster.create", "deploy.all")
    assert result.returncode == 0, result.stderr
    assert "kubectl --kubeconfig" in result.stdout and "apply --server-side" in result.stdout
    assert resource_versions(sim_cluster) == before


def test_dry_run_of_a_new_cluster_prints_kwokctl_and_creates_nothing(tmp_path: Path) -> None:
    from support.cli import inv
    from support.sim import sim_env

    env = {**sim_env(tmp_path), "PRISM_ENV": "staging"}
    result = inv("--dry", "cluster.create", "deploy.all", env=env)
    assert result.returncode == 0, result.stderr
    assert (
        "kwokctl --config" in result.stdout
        and "create cluster --name prism-staging" in result.stdout
    )
    assert "apply --server-side" in result.stdout
    assert not (tmp_path / "kwok" / "clusters").exists()


CHANGED_CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: prism-admin-config, namespace: prism}
data:
  extra.yaml: "changed: yes"
"""


def test_a_rejected_object_leaves_every_other_object_as_it_was(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    """The whole plan is checked by the server first: a valid ConfigMap change in the same
    overlay as a rejected Deployment is not applied either."""
    before = resource_versions(sim_cluster)
    overlay = broken_overlay(tmp_path, MISSPELLED_FIELD + "---" + CHANGED_CONFIGMAP)
    result = sim_cluster.inv("deploy.all", "--overlay", str(overlay))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "the API server rejected Deployment prism/prism-proxy" in last, last
    assert "nothing was applied" in last
    assert resource_versions(sim_cluster) == before
    config = sim_cluster.get("configmap", "prism-admin-config", "-n", "prism")
    assert "extra.yaml" not in config["data"]


def test_a_step_that_breaks_stops_its_dependents_and_fails(
    sim_cluster: SimCluster, deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only Exit: any exception inside a step (a KeyError here) fails that step, skips
    the steps after it and ends the deploy non-zero in one line."""
    from support.cli import make_context

    from tasks import deploy
    from tasks._deploy import plan

    for key, value in sim_cluster.env.items():
        monkeypatch.setenv(key, value)
    before = resource_versions(sim_cluster)
    real_apply = plan.Plan.apply

    def apply(self: plan.Plan, objects: list[dict], *rest: object) -> None:  # type: ignore[type-arg]
        if any(o["metadata"]["name"] == "prism-admin" for o in objects):
            raise KeyError("spec")
        real_apply(self, objects, *rest)

    monkeypatch.setattr(plan.Plan, "apply", apply)
    with pytest.raises(Exit) as failed:
        deploy.deploy_steps(make_context(), ("admin", "proxy", "runners"), "ci", 10)
    assert failed.value.code != 0
    message = str(failed.value.message)
    assert message.endswith("KeyError: 'spec'") and "\n" not in message, message
    after = resource_versions(sim_cluster)
    proxy = "Deployment/prism/prism-proxy"
    assert after[proxy] == before[proxy]  # the dependent step never applied


def test_delete_then_deploy_converges(sim_cluster: SimCluster, deployed: str) -> None:
    """A deleted claim's simulated volume goes with it, so the next deploy binds afresh."""
    deleted = sim_cluster.inv("deploy.delete", "--yes", "--overlay", "ci")
    assert deleted.returncode == 0, deleted.stderr
    again = sim_cluster.inv("deploy.all", "--overlay", "ci", "--timeout", "60")
    assert again.returncode == 0, again.stdout + again.stderr
    claim = sim_cluster.get("pvc", "prism-admin-data", "-n", "prism")
    assert claim["status"]["phase"] == "Bound"


def test_restart_rolls_the_pods_and_waits_for_the_new_ones(
    sim_cluster: SimCluster, deployed: str
) -> None:
    def pods() -> set[str]:
        found = sim_cluster.get("pods", "-n", "prism", "-l", "app=prism-admin")["items"]
        return {p["metadata"]["name"] for p in found if not p["metadata"].get("deletionTimestamp")}

    before = pods()
    result = sim_cluster.inv("deploy.restart", "prism-admin", "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restarted Deployment prism/prism-admin: new pods Ready in" in result.stdout
    admin = workloads(sim_cluster)[("prism", "Deployment", "prism-admin")]
    annotations = admin["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert admin["status"]["readyReplicas"] == admin["status"]["updatedReplicas"] == 1
    assert pods().isdisjoint(before)


def test_restart_of_an_unknown_workload_names_the_known_ones(
    sim_cluster: SimCluster, deployed: str
) -> None:
    result = sim_cluster.inv("deploy.restart", "prism-admn")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("no Prism workload 'prism-admn' in the cluster; choose one of: ")
    assert "prism-admin" in last


THREE_PROXIES = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: prism-proxy, namespace: prism}
spec: {replicas: 3}
"""


def test_a_redeploy_leaves_the_replica_count_to_the_hpa(
    sim_cluster: SimCluster, deployed: str, tmp_path: Path
) -> None:
    """Once an HPA scales prism-proxy, deploying again keeps its count; and the deploy that
    adds the HPA hands the count over instead of dropping it (to the default 1)."""
    without_hpa = broken_overlay(tmp_path / "a", patch=THREE_PROXIES)
    with_hpa = broken_overlay(tmp_path / "b", patch=THREE_PROXIES)
    hpa = Path(__file__).resolve().parents[2] / "manifests" / "components" / "hpa"
    relative = os.path.relpath(hpa, with_hpa)  # kustomize takes no absolute component path
    with (with_hpa / "kustomization.yaml").open("a") as kustomization:
        kustomization.write(f"components:\n- {relative}\n")

    def deploy(overlay: Path | str) -> None:
        result = sim_cluster.inv("deploy.all", "--overlay", str(overlay), "--timeout", "60")
        assert result.returncode == 0, result.stdout + result.stderr

    def replicas() -> int:
        return int(sim_cluster.get("deployment", "prism-proxy", "-n", "prism")["spec"]["replicas"])

    try:
        deploy(without_hpa)
        assert replicas() == 3
        deploy(with_hpa)
        assert replicas() == 3  # handed over, not removed
        # what the autoscaler does: a change through the scale subresource
        sim_cluster.kubectl("scale", "deployment/prism-proxy", "-n", "prism", "--replicas=5")
        deploy(with_hpa)
        assert replicas() == 5
        diff = sim_cluster.inv("deploy.diff", "--overlay", str(with_hpa))
        assert diff.stdout.strip().endswith("no changes"), diff.stdout + diff.stderr
    finally:
        sim_cluster.kubectl("delete", "hpa", "prism-proxy-hpa", "-n", "prism", "--ignore-not-found")
        deploy("ci")
