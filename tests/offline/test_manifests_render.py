"""Render every kustomize tree under manifests/ and pin what the guide and the deploy code rely on.

No cluster: `kubectl kustomize` builds each tree and the tests read the objects it prints.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


@pytest.fixture(autouse=True)
def kubectl_on_path() -> None:
    """These tests render with kubectl's built-in kustomize; without it they fail, never skip."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with built-in kustomize) is not on PATH; install kubectl 1.29+")


OVERLAYS = ["local", "ci", "dev", "staging", "prod"]
BASES = sorted(p.name for p in (MANIFESTS / "base").iterdir() if p.is_dir())
# Invariants that hold for the stack as a whole hold for each building block too, including
# the Kafka base that no overlay deploys by default.
EVERY_TREE = ["stack"] + [f"overlays/{o}" for o in OVERLAYS] + [f"base/{b}" for b in BASES]

WITH_INGRESS = ["local", "dev", "staging", "prod"]
WITH_HPA = ["local", "dev", "staging", "prod"]

# The label contract: app.kubernetes.io/name is the base directory, component is its tier.
TIER_OF = {
    "namespaces": "foundation",
    "storage": "foundation",
    "network-policies": "foundation",
    "disruption-budgets": "foundation",
    "redis": "backend",
    "nats": "backend",
    "minio": "backend",
    "postgres": "backend",
    "kafka": "backend",
    "prism-admin": "admin",
    "prism-proxy": "proxy",
    "keyvalue-runner": "runner",
    "consumer-runner": "runner",
    "producer-runner": "runner",
    "mailbox-runner": "runner",
    "ingress": "ingress",
    "hpa": "autoscaling",
}

# The Secrets the deploy code creates from .env: name -> (namespace, keys).
SECRETS = {
    "minio-credentials": ("prism-backends", {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
    "postgres-credentials": (
        "prism-backends",
        {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    ),
    "mailbox-s3-credentials": ("prism", {"S3_ACCESS_KEY", "S3_SECRET_KEY"}),
}
SECRET_ENV_NAMES = set().union(*(keys for _, keys in SECRETS.values()))

# (workload, env var) -> (Secret, key) it must be read from.
CREDENTIAL_ENV = {
    ("minio", "MINIO_ROOT_USER"): ("minio-credentials", "MINIO_ROOT_USER"),
    ("minio", "MINIO_ROOT_PASSWORD"): ("minio-credentials", "MINIO_ROOT_PASSWORD"),
    ("postgres", "POSTGRES_USER"): ("postgres-credentials", "POSTGRES_USER"),
    ("postgres", "POSTGRES_PASSWORD"): ("postgres-credentials", "POSTGRES_PASSWORD"),
    ("postgres", "POSTGRES_DB"): ("postgres-credentials", "POSTGRES_DB"),
    ("mailbox-runner", "S3_ACCESS_KEY"): ("mailbox-s3-credentials", "S3_ACCESS_KEY"),
    ("mailbox-runner", "S3_SECRET_KEY"): ("mailbox-s3-credentials", "S3_SECRET_KEY"),
}

# The guide's workloads, steps 3-6 (NATS pinned per guide correction 4): kind, namespace, name, replicas, image.
GUIDE_WORKLOADS = [
    ("StatefulSet", "prism-backends", "redis", 1, "redis:7-alpine"),
    ("StatefulSet", "prism-backends", "nats", 1, "nats:2.10-alpine"),
    ("StatefulSet", "prism-backends", "minio", 1, "minio/minio:latest"),
    ("StatefulSet", "prism-backends", "postgres", 1, "postgres:16-alpine"),
    ("Deployment", "prism", "prism-admin", 1, "prism-admin:latest"),
    ("Deployment", "prism", "prism-proxy", 2, "prism-proxy:latest"),
    ("StatefulSet", "prism", "keyvalue-runner", 1, "keyvalue-runner:latest"),
    ("Deployment", "prism", "consumer-runner", 2, "consumer-runner:latest"),
    ("Deployment", "prism", "producer-runner", 2, "producer-runner:latest"),
    ("StatefulSet", "prism", "mailbox-runner", 1, "mailbox-runner:latest"),
]

# "Resource Limits and Scaling": prism-proxy replicas, (memory, cpu) requests and limits.
PROFILES = {
    "small": (1, ("128Mi", "100m"), ("256Mi", "500m")),
    "medium": (2, ("256Mi", "200m"), ("512Mi", "1000m")),
    "large": (3, ("512Mi", "500m"), ("1Gi", "2000m")),
}
# local carries the guide's own numbers, which are the medium profile's.
PROFILE_OF = {
    "local": "medium",
    "ci": "small",
    "dev": "small",
    "staging": "medium",
    "prod": "large",
}

GUIDE_HPA_SPEC = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "prism-proxy"},
    "minReplicas": 2,
    "maxReplicas": 10,
    "metrics": [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        },
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        },
    ],
}

DEPRECATED_KUSTOMIZE_FIELDS = {
    "commonLabels",
    "bases",
    "patchesStrategicMerge",
    "patchesJson6902",
    "vars",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


# --- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    returncode: int
    stdout: str
    stderr: str

    @property
    def objects(self) -> list[dict[str, Any]]:
        assert self.returncode == 0, f"kubectl kustomize failed:\n{self.stderr}"
        return [doc for doc in yaml.safe_load_all(self.stdout) if doc]


@functools.cache
def _render_path(path: str) -> Rendered:
    proc = subprocess.run(
        ["kubectl", "kustomize", path], capture_output=True, text=True, check=False
    )
    return Rendered(proc.returncode, proc.stdout, proc.stderr)


def render(tree: str) -> Rendered:
    """Render a tree given relative to manifests/, e.g. "overlays/local"."""
    return _render_path(str(MANIFESTS / tree))


def objects(tree: str) -> list[dict[str, Any]]:
    return render(tree).objects


def overlay(name: str) -> list[dict[str, Any]]:
    return objects(f"overlays/{name}")


# --- reading objects -----------------------------------------------------------------------------


def ident(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '-')}/{meta['name']}"


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def the(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return container


def replicas_of(objs: list[dict[str, Any]], workload: dict[str, Any]) -> int:
    """The workload's replica count, or the floor of the HPA that owns it."""
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) == (workload["kind"], workload["metadata"]["name"]):
            return int(hpa["spec"]["minReplicas"])
    return int(workload["spec"].get("replicas", 1))


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside node, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def ingress_routes(ingress: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(host, path, service, port) for every path of the Ingress."""
    return [
        (
            rule["host"],
            p["path"],
            p["backend"]["service"]["name"],
            p["backend"]["service"]["port"]["number"],
        )
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]


def ingress_to(objs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    found = [i for i in of_kind(objs, "Ingress") if any(r[2] == service for r in ingress_routes(i))]
    assert len(found) == 1, f"expected one Ingress routing to {service}, found {len(found)}"
    return found[0]


# --- every tree renders and follows the contracts ------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_renders_without_warnings(name: str) -> None:
    result = render(f"overlays/{name}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.objects


@pytest.mark.parametrize("base", BASES)
def test_base_component_renders_alone_without_warnings(base: str) -> None:
    result = render(f"base/{base}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.objects


@pytest.mark.parametrize("base", BASES)
def test_base_component_is_named_after_its_directory(base: str) -> None:
    for obj in objects(f"base/{base}"):
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == base, ident(obj)


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_every_object_carries_the_label_contract(tree: str) -> None:
    for obj in objects(tree):
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "prism", ident(obj)
        name = labels.get("app.kubernetes.io/name")
        assert name in TIER_OF, f"{ident(obj)}: unknown app.kubernetes.io/name {name!r}"
        assert labels.get("app.kubernetes.io/component") == TIER_OF[name], ident(obj)


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_pods_carry_the_label_contract(tree: str) -> None:
    for workload in workloads(objects(tree)):
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/name",
            "app.kubernetes.io/component",
        ):
            assert pod_labels[key] == workload["metadata"]["labels"][key], (
                f"{ident(workload)}: {key}"
            )


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_selectors_keep_only_the_guides_app_label(tree: str) -> None:
    for workload in workloads(objects(tree)):
        assert set(workload["spec"]["selector"]["matchLabels"]) == {"app"}, ident(workload)
    for service in of_kind(objects(tree), "Service"):
        assert set(service["spec"]["selector"]) == {"app"}, ident(service)


def test_no_kustomization_uses_deprecated_fields() -> None:
    for path in MANIFESTS.rglob("kustomization.yaml"):
        fields = set(yaml.safe_load(path.read_text()))
        assert not fields & DEPRECATED_KUSTOMIZE_FIELDS, (
            f"{path.relative_to(MANIFESTS)}: {fields & DEPRECATED_KUSTOMIZE_FIELDS}"
        )


# --- credentials (guide correction 1) ----------------------------------------------------------------------


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_no_secret_value_is_committed(tree: str) -> None:
    objs = objects(tree)
    for secret in of_kind(objs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), ident(secret)
    for workload in workloads(objs):
        for container in containers(workload):
            for name, entry in env_of(container).items():
                if name in SECRET_ENV_NAMES:
                    assert "value" not in entry, f"{ident(workload)}: {name} has a literal value"
    # The guide's default credentials must not reappear anywhere else either.
    assert "minioadmin" not in render(tree).stdout


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_every_secret_reference_names_a_known_secret_and_key(tree: str) -> None:
    for obj in objects(tree):
        namespace = obj["metadata"].get("namespace")
        for node in walk(obj):
            if "secretKeyRef" in node:
                ref = node["secretKeyRef"]
                assert ref["name"] in SECRETS, f"{ident(obj)}: unknown Secret {ref['name']}"
                secret_namespace, keys = SECRETS[ref["name"]]
                assert namespace == secret_namespace, (
                    f"{ident(obj)}: {ref['name']} lives in {secret_namespace}"
                )
                assert ref["key"] in keys, f"{ident(obj)}: {ref['name']} has no key {ref['key']}"
            # Whole-Secret mounts would bypass the name/key contract.
            assert "secretRef" not in node, ident(obj)
            assert not ("secret" in node and "secretName" in node.get("secret", {})), ident(obj)


@pytest.mark.parametrize(("workload", "env_name"), sorted(CREDENTIAL_ENV))
def test_credentials_come_from_their_secret(workload: str, env_name: str) -> None:
    obj = the(overlay("local"), "StatefulSet", workload)
    entry = env_of(only_container(obj))[env_name]
    secret, key = CREDENTIAL_ENV[(workload, env_name)]
    assert entry["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}


# --- the guide's stack ---------------------------------------------------------------------------


def test_local_overlay_runs_exactly_the_guides_workloads() -> None:
    rendered = {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in workloads(overlay("local"))
    }
    assert rendered == {(kind, ns, name) for kind, ns, name, _, _ in GUIDE_WORKLOADS}


@pytest.mark.parametrize(("kind", "namespace", "name", "replicas", "image"), GUIDE_WORKLOADS)
def test_local_workload_has_the_guides_replicas_and_image(
    kind: str, namespace: str, name: str, replicas: int, image: str
) -> None:
    objs = overlay("local")
    obj = the(objs, kind, name)
    assert obj["metadata"]["namespace"] == namespace
    assert replicas_of(objs, obj) == replicas
    assert only_container(obj)["image"] == image


def test_local_overlay_creates_the_guides_namespaces_and_storage_class() -> None:
    objs = overlay("local")
    assert {n["metadata"]["name"] for n in of_kind(objs, "Namespace")} == {
        "prism",
        "prism-backends",
    }
    storage = the(objs, "StorageClass", "local-storage")
    assert storage["provisioner"] == "rancher.io/local-path"
    assert storage["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage["reclaimPolicy"] == "Delete"


def test_proxy_probes_over_grpc_behind_the_guides_load_balancer() -> None:
    objs = overlay("local")
    proxy = only_container(the(objs, "Deployment", "prism-proxy"))
    assert proxy["readinessProbe"]["grpc"] == {"port": 50051}
    # issue 17: the guide's liveness probe was the same gRPC check; now "the port accepts"
    assert proxy["livenessProbe"] == {
        "tcpSocket": {"port": 50051},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
    }
    service = the(objs, "Service", "prism-proxy")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"
    }
    assert {p["port"] for p in service["spec"]["ports"]} == {50051, 9090}


def test_nats_is_pinned_with_jetstream_and_monitoring() -> None:
    objs = overlay("local")
    nats = only_container(the(objs, "StatefulSet", "nats"))
    assert nats["image"] == "nats:2.10-alpine"
    assert "-js" in nats["args"]
    assert nats["args"][nats["args"].index("-m") + 1] == "8222"
    assert {p["port"] for p in the(objs, "Service", "nats")["spec"]["ports"]} == {4222, 8222}


def test_kafka_is_left_out_of_the_local_overlay() -> None:
    assert not [o for o in overlay("local") if o["metadata"]["name"] == "kafka"]


def test_kafka_component_adds_a_single_node_kraft_broker(tmp_path: Path) -> None:
    to_manifests = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n- {to_manifests}/overlays/local\n"
        f"components:\n- {to_manifests}/components/kafka\n"
    )
    result = _render_path(str(tmp_path))
    assert result.stderr == ""
    kafka = the(result.objects, "StatefulSet", "kafka")
    assert kafka["metadata"]["labels"]["app.kubernetes.io/component"] == "backend"
    assert kafka["spec"]["replicas"] == 1
    container = only_container(kafka)
    assert container["image"] == "apache/kafka:3.7.0"
    env = {name: entry.get("value") for name, entry in env_of(container).items()}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert (
        env["KAFKA_ADVERTISED_LISTENERS"]
        == "PLAINTEXT://kafka-0.kafka.prism-backends.svc.cluster.local:9092"
    )
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    (claim,) = kafka["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "local-storage"


# --- StatefulSets (guide correction 2, 3) ------------------------------------------------------------------


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_every_statefulset_has_a_headless_governing_service(tree: str) -> None:
    objs = objects(tree)
    for sts in of_kind(objs, "StatefulSet"):
        namespace = sts["metadata"]["namespace"]
        governing = [
            s
            for s in of_kind(objs, "Service")
            if s["metadata"]["name"] == sts["spec"]["serviceName"]
            and s["metadata"]["namespace"] == namespace
        ]
        assert len(governing) == 1, f"{ident(sts)}: no Service {sts['spec']['serviceName']}"
        assert governing[0]["spec"].get("clusterIP") == "None", (
            f"{ident(governing[0])} is not headless"
        )
        assert governing[0]["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("tree", EVERY_TREE)
def test_every_statefulset_mounts_its_claims(tree: str) -> None:
    for sts in of_kind(objects(tree), "StatefulSet"):
        mounted = {m["name"] for c in containers(sts) for m in c.get("volumeMounts", [])}
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            assert claim["metadata"]["name"] in mounted, (
                f"{ident(sts)}: claim {claim['metadata']['name']} unmounted"
            )


@pytest.mark.parametrize("name", OVERLAYS)
def test_mailbox_runner_mounts_its_claim_at_data(name: str) -> None:
    mailbox = the(overlay(name), "StatefulSet", "mailbox-runner")
    (claim,) = mailbox["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in only_container(mailbox)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"


# --- ingress (guide correction 6) --------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_INGRESS)
def test_admin_ingress_is_plain_http(name: str) -> None:
    admin = ingress_to(overlay(name), "prism-admin")
    assert ingress_routes(admin) == [("prism.local", "/admin", "prism-admin", 8080)]
    annotations = admin["metadata"].get("annotations", {})
    assert "nginx.ingress.kubernetes.io/backend-protocol" not in annotations
    assert "nginx.ingress.kubernetes.io/grpc-backend" not in annotations


@pytest.mark.parametrize("name", WITH_INGRESS)
def test_grpc_ingress_sends_everything_else_to_the_proxy(name: str) -> None:
    grpc = ingress_to(overlay(name), "prism-proxy")
    assert ingress_routes(grpc) == [("prism.local", "/", "prism-proxy", 50051)]
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"


@pytest.mark.parametrize("name", WITH_INGRESS)
def test_ingresses_use_the_nginx_class(name: str) -> None:
    ingresses = of_kind(overlay(name), "Ingress")
    assert len(ingresses) == 2
    assert {i["spec"]["ingressClassName"] for i in ingresses} == {"nginx"}


def test_ci_leaves_out_ingress_and_hpa() -> None:
    kinds = {o["kind"] for o in overlay("ci")}
    assert "Ingress" not in kinds
    assert "HorizontalPodAutoscaler" not in kinds


# --- sizing and autoscaling ----------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_sizes_the_proxy_by_its_profile(name: str) -> None:
    replicas, (req_memory, req_cpu), (lim_memory, lim_cpu) = PROFILES[PROFILE_OF[name]]
    objs = overlay(name)
    proxy = the(objs, "Deployment", "prism-proxy")
    assert replicas_of(objs, proxy) >= replicas  # the HPA's floor where one owns the count
    if name not in WITH_HPA:
        assert proxy["spec"]["replicas"] == replicas
    resources = only_container(proxy)["resources"]
    cpu_and_memory = {
        bound: {k: v for k, v in values.items() if k in ("memory", "cpu")}
        for bound, values in resources.items()
    }
    assert cpu_and_memory == {
        "requests": {"memory": req_memory, "cpu": req_cpu},
        "limits": {"memory": lim_memory, "cpu": lim_cpu},
    }


@pytest.mark.parametrize("name", OVERLAYS)
def test_profiles_leave_the_other_workloads_at_the_guides_replicas(name: str) -> None:
    for kind, _, workload, replicas, _ in GUIDE_WORKLOADS:
        if workload != "prism-proxy":
            assert the(overlay(name), kind, workload)["spec"]["replicas"] == replicas, workload
        obj = the(overlay(name), kind, workload)
        resources = only_container(obj).get("resources", {})
        if workload not in ("prism-proxy", "minio"):  # the guide gives MinIO no CPU or memory
            guide = only_container(the(objects(f"base/{workload}"), kind, workload))["resources"]
            for bound in ("requests", "limits"):
                for key in ("cpu", "memory"):
                    assert resources[bound][key] == guide[bound][key], (workload, bound, key)


def test_local_hpa_is_the_guides() -> None:
    hpa = the(overlay("local"), "HorizontalPodAutoscaler", "prism-proxy-hpa")
    assert hpa["metadata"]["namespace"] == "prism"
    assert hpa["spec"] == GUIDE_HPA_SPEC


@pytest.mark.parametrize("name", WITH_HPA)
def test_hpa_floor_is_not_below_the_profiles_replicas(name: str) -> None:
    objs = overlay(name)
    hpa = the(objs, "HorizontalPodAutoscaler", "prism-proxy-hpa")
    assert hpa["spec"]["minReplicas"] >= PROFILES[PROFILE_OF[name]][0]
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("name", WITH_HPA)
def test_the_hpa_owns_the_replica_count_of_what_it_scales(name: str) -> None:
    """kube-score's deployment-targeted-by-hpa-does-not-have-replicas-configured: a static
    count beside an autoscaler is one the next apply would fight it over."""
    objs = overlay(name)
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert "replicas" not in the(objs, ref["kind"], ref["name"])["spec"], ident(hpa)


# --- a shared cluster (issue 17): Pod Security, probes, bounds, budgets, NetworkPolicies --------

OUR_NAMESPACES = ("prism", "prism-backends")
# Every workload a tree can hold: the overlays', and Kafka's (deployed from its base alone).
HARDENED_TREES = [f"overlays/{o}" for o in OVERLAYS] + ["base/kafka"]
RUNNERS = {"keyvalue-runner", "consumer-runner", "producer-runner", "mailbox-runner"}
PRISM_IMAGES = {"prism-admin", "prism-proxy"} | RUNNERS

# (runAsUser, runAsGroup) per workload: the image's own user where it has one; a uid above
# 10000 where the image has none (docs/manifests-security.md says which rests on what).
RUNS_AS = {
    **{name: (65534, 65534) for name in PRISM_IMAGES},  # nobody, as cmd/prism-admin/Dockerfile
    "redis": (999, 1000),
    "postgres": (70, 70),
    "kafka": (1000, 1000),
    "nats": (10001, 10001),
    "minio": (10001, 10001),
}
# The Pod Security Standards' "restricted" volume types.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def hardened_workloads() -> list[tuple[str, dict[str, Any]]]:
    return [(tree, w) for tree in HARDENED_TREES for w in workloads(objects(tree))]


@pytest.mark.parametrize("name", OVERLAYS)
def test_both_namespaces_enforce_pod_security_restricted(name: str) -> None:
    for namespace in of_kind(overlay(name), "Namespace"):
        labels = namespace["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", ident(namespace)


@pytest.mark.parametrize("tree", HARDENED_TREES)
def test_every_pod_meets_pod_security_restricted(tree: str) -> None:
    """The profile's rules as the API server checks them (tests/cluster/test_pod_security.py
    has the real one reject a pod that breaks them)."""
    for workload in workloads(objects(tree)):
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), ident(workload)
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (ident(workload), volume)
        for container in containers(workload):
            own = container.get("securityContext", {})
            where = f"{ident(workload)} container {container['name']}"
            assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert own.get("runAsUser", pod.get("runAsUser")) not in (0, None), where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert not own.get("privileged"), where
            assert "ALL" in own.get("capabilities", {}).get("drop", []), where
            assert set(own.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
            seccomp = own.get("seccompProfile", pod.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
            assert not any(p.get("hostPort") for p in container.get("ports", [])), where


@pytest.mark.parametrize("tree", HARDENED_TREES)
def test_each_workload_runs_as_its_images_user_and_owns_its_volumes(tree: str) -> None:
    for workload in workloads(objects(tree)):
        pod = pod_spec(workload)["securityContext"]
        user, group = RUNS_AS[workload["metadata"]["name"]]
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (user, group, group), ident(
            workload
        )
        assert pod_spec(workload)["automountServiceAccountToken"] is False, ident(workload)


@pytest.mark.parametrize("tree", HARDENED_TREES)
def test_root_filesystems_are_read_only_with_a_volume_for_each_written_path(tree: str) -> None:
    for workload in workloads(objects(tree)):
        for container in containers(workload):
            read_only = container["securityContext"]["readOnlyRootFilesystem"]
            # the Kafka image writes its configuration beside files it ships (its ignore says so)
            assert read_only is (workload["metadata"]["name"] != "kafka"), ident(workload)
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if read_only and workload["metadata"]["name"] != "nats":  # nats writes only /data
                assert "/tmp" in mounts, ident(workload)


def test_postgres_keeps_its_data_in_a_directory_it_creates_inside_its_claim() -> None:
    postgres = only_container(the(overlay("ci"), "StatefulSet", "postgres"))
    pgdata = env_of(postgres)["PGDATA"]["value"]
    (claim,) = [m for m in postgres["volumeMounts"] if m["name"] == "data"]
    assert pgdata.startswith(claim["mountPath"] + "/")
    assert "/var/run/postgresql" in {m["mountPath"] for m in postgres["volumeMounts"]}


def handler(probe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in probe.items() if k in ("exec", "httpGet", "tcpSocket", "grpc")}


@pytest.mark.parametrize("tree", HARDENED_TREES)
def test_every_serving_container_has_readiness_and_a_different_liveness_probe(tree: str) -> None:
    for workload in workloads(objects(tree)):
        for container in containers(workload):
            if workload["metadata"]["name"] in RUNNERS:
                # no port and no health endpoint: nothing a probe could ask (components/probes)
                assert "readinessProbe" not in container, ident(workload)
                continue
            readiness, liveness = container["readinessProbe"], container["livenessProbe"]
            assert len(handler(readiness)) == len(handler(liveness)) == 1, ident(workload)
            assert handler(readiness) != handler(liveness), ident(workload)


@pytest.mark.parametrize("tree", HARDENED_TREES)
def test_every_container_requests_and_bounds_ephemeral_storage(tree: str) -> None:
    for workload in workloads(objects(tree)):
        for container in containers(workload):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                for key in ("cpu", "memory", "ephemeral-storage"):
                    assert key in resources[bound], (ident(workload), bound, key)


# The guide's workloads with more than one replica (prism-proxy: in every profile but the small).
BUDGETED = {"prism-proxy", "consumer-runner", "producer-runner"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_workload_that_runs_several_replicas_has_one_budget(name: str) -> None:
    objs = overlay(name)
    budgets = of_kind(objs, "PodDisruptionBudget")
    for workload in workloads(objs):
        if replicas_of(objs, workload) > 1:
            assert workload["metadata"]["name"] in BUDGETED, ident(workload)
        pods = workload["spec"]["template"]["metadata"]["labels"]
        matching = [
            b
            for b in budgets
            if b["metadata"]["namespace"] == workload["metadata"]["namespace"]
            and b["spec"]["selector"]["matchLabels"].items() <= pods.items()
        ]
        assert len(matching) == (workload["metadata"]["name"] in BUDGETED), ident(workload)
        for budget in matching:
            # never blocks a drain, even at the small profile's one proxy
            assert budget["spec"] == {
                "maxUnavailable": 1,
                "selector": workload["spec"]["selector"],
            }, ident(budget)


# NetworkPolicies: the flows they allow, as manifests/README.md's table writes them.

Flow = tuple[str, str, str]  # (from, to, ports)


def peer(entry: dict[str, Any], namespace: str) -> str:
    """`<namespace>/<app>`, `<namespace>/*` or `anywhere`, as the README's table writes it."""
    if "namespaceSelector" in entry:
        namespace = entry["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    labels = entry.get("podSelector", {}).get("matchLabels", {})
    assert len(labels) <= 1, entry
    return f"{namespace}/{next(iter(labels.values()), '*')}"


def policy_flows(objs: list[dict[str, Any]]) -> tuple[set[Flow], set[Flow]]:
    """(what the ingress rules let in, what the egress rules let out)."""
    ingress, egress = set(), set()
    for policy in of_kind(objs, "NetworkPolicy"):
        namespace, spec = policy["metadata"]["namespace"], policy["spec"]
        selected = peer({"podSelector": spec["podSelector"]}, namespace)
        for rule in spec.get("ingress", []):
            ports = ", ".join(f"{p['port']}/{p['protocol']}" for p in rule["ports"])
            sources = [peer(e, namespace) for e in rule["from"]] if "from" in rule else ["anywhere"]
            ingress |= {(source, selected, ports) for source in sources}
        for rule in spec.get("egress", []):
            ports = ", ".join(f"{p['port']}/{p['protocol']}" for p in rule["ports"])
            egress |= {(selected, peer(e, namespace), ports) for e in rule["to"]}
    return ingress, egress


def allowed_flows(objs: list[dict[str, Any]]) -> set[Flow]:
    ingress, egress = policy_flows(objs)
    return ingress | egress


def documented_flows() -> set[Flow]:
    text = (MANIFESTS / "README.md").read_text()
    table = text[text.index("| from | to | port | what for |") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {tuple(cell.strip().strip("`") for cell in row[:3]) for row in rows}  # type: ignore[misc]


@pytest.mark.parametrize("name", OVERLAYS)
def test_both_namespaces_deny_by_default(name: str) -> None:
    policies = of_kind(overlay(name), "NetworkPolicy")
    for namespace in OUR_NAMESPACES:
        deny = [
            p
            for p in policies
            if p["metadata"]["namespace"] == namespace
            and p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        ]
        assert len(deny) == 1, namespace


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_policies_allow_exactly_the_flows_the_readme_documents(name: str) -> None:
    assert allowed_flows(overlay(name)) == documented_flows()


def test_both_ends_of_every_flow_inside_the_stack_agree() -> None:
    """Where client and server are both ours, the client's egress and the server's ingress must
    allow the same connection, or whichever is missing drops it."""
    ingress, egress = policy_flows(overlay("local"))
    ours = lambda end: end.split("/")[0] in OUR_NAMESPACES  # noqa: E731
    for source, target, ports in egress:
        if ours(target):
            accepted = {source, f"{source.split('/')[0]}/*", "anywhere"}
            assert any((s, target, ports) in ingress for s in accepted), (source, target, ports)
    for source, target, ports in ingress:
        if ours(source):
            assert (source, target, ports) in egress, (source, target, ports)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_policy_selects_pods_that_exist(name: str) -> None:
    objs = overlay(name)
    apps = {
        (w["metadata"]["namespace"], w["spec"]["template"]["metadata"]["labels"]["app"])
        for w in workloads(objs)
    }
    for policy in of_kind(objs, "NetworkPolicy"):
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        if labels:
            assert (policy["metadata"]["namespace"], labels["app"]) in apps, ident(policy)


# Images: pinned where a shared cluster runs them, the guide's local convention elsewhere.

PINNED = ["staging", "prod", "ci"]
LOCAL_CONVENTION = ["local", "dev"]


@pytest.mark.parametrize("name", PINNED)
def test_pinned_overlays_name_no_moving_tag_and_always_pull(name: str) -> None:
    from tasks._core import settings as _settings

    for workload in workloads(overlay(name)):
        container = only_container(workload)
        image, _, tag = container["image"].rpartition(":")
        assert image and tag and tag != "latest", ident(workload)
        assert container["imagePullPolicy"] == "Always", ident(workload)
        if image in PRISM_IMAGES:
            # what the deploy puts there (images.tag's default for the environment) is the pin
            assert tag == _settings.ENVIRONMENTS[name].image_tag == _settings.PINNED_IMAGE_TAG


@pytest.mark.parametrize("name", LOCAL_CONVENTION)
def test_local_overlays_keep_the_guides_local_imports(name: str) -> None:
    from tasks._core import settings as _settings

    assert _settings.ENVIRONMENTS[name].image_tag == "latest"
    for workload in workloads(overlay(name)):
        container = only_container(workload)
        if workload["metadata"]["name"] in PRISM_IMAGES:
            assert container["image"] == f"{workload['metadata']['name']}:latest"
            assert container["imagePullPolicy"] == "Never"
