"""`inv -H` against the real simulated cluster: the host's kubectl and kwokctl over sshd, and the
Python client through the tunnel to the host's real kube-apiserver (its own certificates)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.sim import SimCluster
from support.sshd import SshServer, ssh_keys, sshd_factory  # noqa: F401  (fixtures)

from tasks._remote.hosts import HostConfig, HostConnection

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def host(sim_cluster: SimCluster, sshd_factory: Callable[..., SshServer]) -> SshServer:  # noqa: F811
    """This machine as an SSH host whose kwokctl sees the session's simulated cluster.

    KWOK_WORKDIR is the host's own setting (kwokctl's state directory); local environment
    variables never travel over SSH, so the server sets it."""
    return sshd_factory(env={key: sim_cluster.env[key] for key in ("KWOK_WORKDIR", "KUBECACHEDIR")})


def on(host: SshServer, cluster: SimCluster, *args: str):  # type: ignore[no-untyped-def]
    return cluster.inv("-H", "box", "--ssh-config", str(host.ssh_config("box")), *args)


def test_cluster_status_on_the_host_lists_the_simulated_nodes(
    host: SshServer, sim_cluster: SimCluster
):
    local = sim_cluster.inv("cluster.status")
    remote = on(host, sim_cluster, "cluster.status")

    assert remote.returncode == 0, remote.stderr
    assert nodes(remote.stdout) == nodes(local.stdout)
    assert ("kwok-prism-ci-server-0", "Ready") in nodes(remote.stdout)


def nodes(output: str) -> list[tuple[str, str]]:
    """(name, status) of each node in `kubectl get nodes` output (AGE differs between runs)."""
    table = output.split("NAME", 1)[1].splitlines()[1:]
    return [(line.split()[0], line.split()[1]) for line in table if line.strip()]


def test_the_python_client_lists_nodes_through_the_tunnel(
    host: SshServer, sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch
):
    """The kwok API server's certificate must verify for the name in the host's kubeconfig."""
    from kubernetes import client as k8s

    import tasks
    from tasks._kube import client as _kube

    for key, value in sim_cluster.env.items():
        monkeypatch.setenv(key, value)
    config = HostConfig(overrides={"connect_kwargs": {"key_filename": [str(host.key_path)]}})
    config.load_collection(tasks.ns.configuration())
    forwards = host.forwards()

    with HostConnection(host.address, config=config) as c, _kube.api_client(c) as api:
        nodes = k8s.CoreV1Api(api).list_node().items
        assert api.configuration.host.startswith("https://127.0.0.1:")

    expected = {n["metadata"]["name"] for n in sim_cluster.get("nodes")["items"]}
    assert {node.metadata.name for node in nodes} == expected
    assert host.forwards() > forwards


def test_deploy_all_on_the_host_brings_up_the_stack_like_locally(
    sshd_factory: Callable[..., SshServer],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
):
    """`inv -H box cluster.create deploy.all`: a cluster of its own (staging's name and ports)
    created by the host's kwokctl, and the whole stack deployed and Ready there."""
    from support.cli import inv
    from support.sim import sim_env

    home = tmp_path_factory.mktemp("remote-stack")
    env = {**sim_env(home), "PRISM_ENV": "staging"}
    host = sshd_factory(env={key: env[key] for key in ("KWOK_WORKDIR", "KUBECACHEDIR")})
    cluster = SimCluster(home=home, env=env, name="prism-staging")
    ssh = ("-H", "box", "--ssh-config", str(host.ssh_config("box")))
    try:
        result = inv(*ssh, "cluster.create", "deploy.all", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert any(line.split()[:2] == ["step", "seconds"] for line in result.stdout.splitlines())
        items = cluster.get(
            "deployments,statefulsets", "-A", "-l", "app.kubernetes.io/part-of=prism"
        )["items"]
        assert len(items) == 10
        assert all(i["status"].get("readyReplicas") == i["spec"]["replicas"] for i in items)

        before = host.sessions()
        again = inv(*ssh, "deploy.all", env=env)
        assert again.returncode == 0, again.stderr
        # one SSH session: cluster.create's three questions and the deploy's two, asked ahead
        # together (cluster.next_questions); the API traffic goes through the tunnel
        assert host.sessions() - before == 1, again.stdout + again.stderr

        # logs come through the API tunnel; port-forwards would listen on the wrong machine
        logs = inv(*ssh, "observe.logs", "prism-admin", env=env)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.startswith("[prism-admin-") and "simulated by kwok" in logs.stdout
        verify = inv(*ssh, "deploy.verify", env=env)
        assert verify.returncode == 1
        assert (
            verify.stderr.strip()
            .splitlines()[-1]
            .startswith("deploy.verify forwards ports to this machine and does not run over -H yet")
        )
    finally:
        deleted = inv(*ssh, "cluster.delete", env=env)
        assert deleted.returncode == 0, deleted.stderr
    assert not (home / "kwok" / "clusters" / "prism-staging").exists()
