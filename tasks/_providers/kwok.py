"""The kwok provider: a real control plane (etcd, kube-apiserver, controller-manager,
scheduler) on 127.0.0.1, whose nodes and pods KWOK simulates.

kwokctl's binary runtime runs the pinned binaries that scripts/build-sim-binaries.sh built; no
component is ever downloaded. Nodes mirror the k3d layout (servers and agents). Volumes,
exec, logs and port-forward are mapped onto this machine:
- claims on `local-storage` bind to PersistentVolumes the deploy engine pre-binds (`volumes`);
- `kubectl exec` runs the command on the host, `kubectl logs` reads one explanatory log file,
  and `kubectl port-forward` to a pod port P reaches 127.0.0.1:P.
No admission webhooks and no aggregated APIs are configured.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core import guard as _guard
from .._core import sim_binaries as _sim
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target
from . import ports as _ports

# The stack's container ports: port-forward to any of them reaches the same port on loopback.
FORWARDED_PORTS = (4222, 5432, 6379, 8080, 8222, 9000, 9001, 9090, 9092, 50051)
STORAGE_CLASS = "local-storage"


def control_plane_ports(s: Settings) -> dict[str, int]:
    """kwokctl's fixed ports, derived from the environment's API port so environments coexist."""
    api = s.cluster_int("api_port")
    if api + 1004 > 65535:
        raise Exit(
            f"PRISM_CLUSTER_API_PORT={api} is too high for the simulated cluster: its other "
            f"control-plane ports are the API port + 1000 to 1004; choose one up to 64531",
            code=1,
        )
    return {
        "kubeApiserverPort": api,
        "etcdPort": api + 1000,
        "etcdPeerPort": api + 1001,
        "kwokControllerPort": api + 1002,
        "kubeControllerManagerPort": api + 1003,
        "kubeSchedulerPort": api + 1004,
    }


def work_dir(s: Settings) -> PurePosixPath:
    return PurePosixPath(str(s.data_dir)) / "kwok"


def config_path(s: Settings, t: Target) -> PurePosixPath:
    return work_dir(s) / f"kwokctl-{t.name}.yaml"


def log_path(s: Settings) -> PurePosixPath:
    return work_dir(s) / "simulated-container.log"


def kwokctl_config(s: Settings, bin_dir: str, kubectl: str) -> dict[str, Any]:
    """The KwokctlConfiguration: every binary local, every component on 127.0.0.1."""
    pins = _sim.versions()
    binaries = {
        "kubeApiserverBinary": "kube-apiserver",
        "kubeControllerManagerBinary": "kube-controller-manager",
        "kubeSchedulerBinary": "kube-scheduler",
        "kwokControllerBinary": "kwok",
        "etcdBinary": "etcd",
    }
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": pins["KUBE_VERSION"],
            "etcdVersion": pins["ETCD_VERSION"].lstrip("v"),
            "kwokVersion": pins["KWOK_VERSION"],
            "bindAddress": "127.0.0.1",
            **control_plane_ports(s),
            "securePort": True,
            "kubeAuthorization": True,
            "kubeAdmission": True,  # the API server's default plugins; no webhooks exist
            "quietPull": True,
            **{key: f"{bin_dir}/{name}" for key, name in binaries.items()},
            # kwokctl probes the API server with kubectl; the others are never used, and a
            # local path keeps kwokctl from downloading them.
            "kubectlBinary": kubectl,
            "etcdctlBinary": "/bin/false",
            "kectlBinary": "/bin/false",
        },
        "componentsPatches": [
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    # Without a default route (a loopback-only namespace) the API server cannot
                    # pick an address by itself.
                    {"key": "advertise-address", "value": "127.0.0.1"},
                    {"key": "endpoint-reconciler-type", "value": "none"},
                    {"key": "service-cluster-ip-range", "value": "10.43.0.0/16"},
                ],
            }
        ],
    }


# What each simulated node offers (kwok's own defaults, plus ephemeral storage).
NODE_CAPACITY = {"cpu": "1k", "memory": "1Ti", "pods": "1M", "ephemeral-storage": "1Ti"}


def node_names(s: Settings, t: Target) -> list[str]:
    servers = [f"kwok-{t.name}-server-{i}" for i in range(s.cluster_int("servers"))]
    agents = [f"kwok-{t.name}-agent-{i}" for i in range(s.cluster_int("agents"))]
    return servers + agents


def nodes(s: Settings, t: Target) -> list[dict[str, Any]]:
    """Fake nodes with k3s-style names and roles; kwok keeps them Ready."""
    objects = []
    for index, name in enumerate(node_names(s, t)):
        labels = {
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": name,
            "node.kubernetes.io/instance-type": "kwok",
            "type": "kwok",
        }
        if "-server-" in name:
            labels["node-role.kubernetes.io/control-plane"] = "true"
            labels["node-role.kubernetes.io/master"] = "true"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": labels,
                },
                "spec": {"podCIDR": f"10.42.{index}.0/24", "podCIDRs": [f"10.42.{index}.0/24"]},
                # a node registers with its status; kwok keeps what it is given, and without
                # ephemeral-storage no pod that requests it would ever be scheduled
                "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY},
            }
        )
    return objects


# Objects carrying this annotation are left alone by KWOK: chaos.node-down puts it on the node
# it takes down and on that node's pods (tasks/_chaos/nodes.py, ANNOTATION: engines do not import each other), so that nothing confirms
# an evicted pod's end or reports the node Ready while its "kubelet" is dead.
DISREGARDED = "prism-tasks.chaos/node-down"


def kwok_config() -> dict[str, Any]:
    """The KwokConfiguration: KWOK's own options (see DISREGARDED)."""
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {"disregardStatusWithAnnotationSelector": DISREGARDED},
    }


def host_mappings(s: Settings) -> list[dict[str, Any]]:
    """exec, logs and port-forward of every simulated pod, mapped onto this machine."""
    return [
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterExec",
            "metadata": {"name": "prism-host-exec"},
            "spec": {
                "execs": [
                    {
                        "local": {
                            "workDir": str(work_dir(s)),
                            "envs": [{"name": "PRISM_SIMULATED", "value": "1"}],
                        }
                    }
                ]
            },
        },
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "prism-simulated-logs"},
            "spec": {"logs": [{"logsFile": str(log_path(s)), "follow": False}]},
        },
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterPortForward",
            "metadata": {"name": "prism-loopback"},
            "spec": {
                "forwards": [
                    {"ports": [port], "target": {"port": port, "address": "127.0.0.1"}}
                    for port in FORWARDED_PORTS
                ]
            },
        },
    ]


def volume_name(namespace: str, claim: str) -> str:
    """The simulated volume pre-bound to a claim. Deleting the claim leaves it Released, bound
    to the old claim's UID, so whoever deletes a claim deletes its volume too."""
    return f"sim-{namespace}-{claim}"


def volumes(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PersistentVolumes pre-bound to every `local-storage` claim the objects will create.

    KWOK has no provisioner; this is static provisioning done ahead of time, so the scheduler's
    WaitForFirstConsumer binding and the claim's requested size behave as on k3d."""
    claims = []
    for obj in objects:
        meta = obj.get("metadata", {})
        if obj.get("kind") == "PersistentVolumeClaim":
            claims.append((meta.get("namespace", "default"), meta["name"], obj["spec"]))
        if obj.get("kind") == "StatefulSet":
            for template in obj["spec"].get("volumeClaimTemplates", []):
                for ordinal in range(obj["spec"].get("replicas", 1)):
                    name = f"{template['metadata']['name']}-{meta['name']}-{ordinal}"
                    claims.append((meta.get("namespace", "default"), name, template["spec"]))
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": volume_name(namespace, name),
                "labels": {
                    "app.kubernetes.io/part-of": "prism",
                    "app.kubernetes.io/name": "simulated-volumes",
                    "app.kubernetes.io/component": "foundation",
                },
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "claimRef": {"namespace": namespace, "name": name},
                "hostPath": {"path": f"/var/lib/prism-sim/{namespace}/{name}"},  # never touched
            },
        }
        for namespace, name, spec in claims
        if spec.get("storageClassName") == STORAGE_CLASS
    ]


def check_binaries(c: Context) -> str:
    """The cached binaries exist and are the pinned versions; returns the bin directory."""
    if _command.is_remote(c):
        return str(_sim.bin_dir())
    missing = _sim.missing()
    if missing:
        raise Exit(
            f"simulated-cluster binaries missing in {_sim.bin_dir()}: {', '.join(missing)}; "
            "build them with scripts/build-sim-binaries.sh",
            code=1,
        )
    pins = _sim.versions()
    expected = {
        "kube-apiserver": pins["KUBE_VERSION"],
        "kwokctl": pins["KWOK_VERSION"],
        "etcd": pins["ETCD_VERSION"].lstrip("v"),
    }
    for name, version in expected.items():
        binary = str(_sim.bin_dir() / name)
        result = _command.query(c, [binary, "--version"], timeout=20)
        if version not in result.stdout:
            found = (result.stdout or result.stderr).strip().splitlines()[:1]
            raise Exit(
                f"{binary} is not {version} (it reports {found[0] if found else 'nothing'}); "
                "rebuild with scripts/build-sim-binaries.sh",
                code=1,
            )
    return str(_sim.bin_dir())


def check_ports_free(c: Context, s: Settings) -> None:
    ports = control_plane_ports(s)
    taken = _ports.busy(c, ports.values())
    for key, port in ports.items():
        problem = taken.get(port)
        if problem:
            hint = (
                "set PRISM_CLUSTER_API_PORT (the other control-plane ports follow it) "
                "or choose another PRISM_ENV"
            )
            raise Exit(f"port {port} ({key} of the simulated cluster) {problem}; {hint}", code=1)


def _kubeconfig_flags(t: Target) -> list[str]:
    return ["--kubeconfig", t.kubeconfig] if t.kubeconfig else []


def check_settings(s: Settings, t: Target) -> None:
    control_plane_ports(s)


def require_runtime(c: Context) -> None:
    """Nothing to check up front: `create` checks the binaries it needs."""


def merge_kubeconfig(c: Context, s: Settings, t: Target) -> None:
    """Nothing to merge: kwokctl writes the cluster's context when it creates the cluster."""


NAMES = ["kwokctl", "get", "clusters"]


def names(c: Context) -> list[str]:
    """Every simulated cluster kwokctl knows; raises when kwokctl cannot say."""
    return _command.ask(c, NAMES, "list the simulated clusters").split()


def exists(c: Context, s: Settings, t: Target) -> bool:
    return t.name in names(c)


def _node_list(t: Target) -> list[str]:
    return ["kubectl", *_target.kube_flags(t), "get", "nodes", "-o", "name"]


def existing_queries(s: Settings, t: Target) -> list[list[str]]:
    return [NAMES, _target.readyz(t), _node_list(t)]


def report_existing(c: Context, s: Settings, t: Target) -> None:
    """The cluster exists: finish what an interrupted `create` left (its nodes), or say that
    there is nothing to do."""
    if not _guard.is_dry(c) and not _target.answers(c):
        # An interrupted create can leave the control plane half started: start what is not
        # running, and wait until the API answers.
        print(f"cluster {t.name} exists but its API server is not ready: restarting it")
        stop(c, s, t)  # with the API down, the node leases stay behind ...
        start(c, s, t)
        stop(c, s, t)  # ... so once it answers, let them go and start kwok afresh
        start(c, s, t)
    _target.require_reachable(c)
    listed = _command.ask(c, _node_list(t), "list the nodes")
    missing = set(node_names(s, t)) - {line.removeprefix("node/") for line in listed.split()}
    if not missing:
        print(f"cluster {t.name} already exists (kwok) and answers; nothing to do")
        return
    add_nodes(c, s, t)
    _target.kubectl(
        c, "wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={s.cluster.wait_timeout}s"
    )
    print(
        f"cluster {t.name} existed without {len(missing)} of its nodes (an interrupted create?): added them"
    )


def add_nodes(c: Context, s: Settings, t: Target) -> None:
    import yaml

    _target.kubectl(c, "apply", "-f", "-", input=yaml.safe_dump_all(nodes(s, t)), hide="stdout")


def create(c: Context, s: Settings, t: Target) -> None:
    import yaml

    bin_dir = check_binaries(c)
    check_ports_free(c, s)
    kubectl = _command.query(c, ["sh", "-c", "command -v kubectl"]).stdout.strip()
    if not kubectl:
        raise Exit("kubectl not found on PATH; install kubectl 1.29+", code=1)
    # The host mappings go in the same file: kwok loads them when it starts, so they hold
    # from the first pod on (rules created through the API arrive a moment later).
    documents = [kwokctl_config(s, bin_dir, kubectl), kwok_config(), *host_mappings(s)]
    _command.write_file(c, config_path(s, t), yaml.safe_dump_all(documents, sort_keys=False))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")  # CRI log format
    note = "simulated by kwok: no container runs in this cluster, so there is no output"
    _command.write_file(c, log_path(s), f"{stamp} stdout F {note}\n")
    previous = _command.query(c, ["kubectl", "config", *_kubeconfig_flags(t), "current-context"])
    try:
        _command.run(
            c,
            [
                "kwokctl",
                "--config",
                str(config_path(s, t)),
                "create",
                "cluster",
                "--name",
                t.name,
                *_kubeconfig_flags(t),
                "--timeout",
                f"{s.cluster.wait_timeout}s",
            ],
            hide="stderr",  # kwokctl logs JSON lines; failures still show their output
        )
    finally:
        if previous.ok and previous.stdout.strip():
            # kwokctl makes its context current; we pin --context everywhere and leave the
            # user's as it was, on every path (failed and interrupted creates too).
            _command.run(
                c,
                [
                    "kubectl",
                    "config",
                    *_kubeconfig_flags(t),
                    "use-context",
                    previous.stdout.strip(),
                ],
                hide=True,
                warn=True,
            )
    add_nodes(c, s, t)
    wait_api_ready(c, t, s.cluster.wait_timeout)


def wait_api_ready(c: Context, t: Target, timeout: int) -> None:
    """kwokctl returns once the API serves; its bootstrap (RBAC roles, priority classes) may
    still be finishing. /readyz has no watch, so this is a short bounded retry on the host."""
    probe = shlex.join(_target.readyz(t))
    tries = max(1, timeout * 5)
    script = (
        f"i=0; until {probe} >/dev/null 2>&1; do i=$((i+1)); "
        f"[ $i -ge {tries} ] && exit 1; sleep 0.2; done"
    )
    if _command.run(c, ["sh", "-c", script], hide=True, warn=True).failed:
        raise Exit(
            f"the API server of cluster {t.name} did not answer within {timeout}s; "
            "`inv cluster.stop cluster.start` restarts it",
            code=1,
        )


def start(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["kwokctl", "start", "cluster", "--name", t.name], hide="stderr")
    wait_api_ready(c, t, s.cluster.wait_timeout)  # kwokctl returns before the API answers


def stop(c: Context, s: Settings, t: Target) -> None:
    # The node leases name this kwok; the one `start` runs will not manage the nodes' pods
    # while they are held (it gives up on a lease that exists). Let them go with it.
    _target.kubectl(
        c, "delete", "leases", "--all", namespace="kube-node-lease", hide="both", warn=True
    )
    _command.run(c, ["kwokctl", "stop", "cluster", "--name", t.name], hide="stderr")


def delete(c: Context, s: Settings, t: Target) -> None:
    _command.run(
        c, ["kwokctl", "delete", "cluster", "--name", t.name, *_kubeconfig_flags(t)], hide="stderr"
    )
