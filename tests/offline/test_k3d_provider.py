"""cluster.* with the k3d provider: the exact k3d / kubectl commands, and the refusals that
happen before anything changes (busy port, bad name, no Docker, foreign context, not ours)."""

from __future__ import annotations

import json
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Exit
from support.cli import inv
from support.fakes import (
    DOCKER_INFO,
    changes,
    cmd,
    commands,
    fail,
    k3d_cluster,
    k3d_nodes,
    ok,
    shell,
    tools,  # noqa: F401  (fixture)
)

from tasks import cluster
from tasks._core import guard as _guard
from tasks._core import settings as _settings
from tasks._core import target as _target
from tasks._core.target import Target
from tasks._providers import k3d as _k3d
from tasks._providers import ports as _ports

pytestmark = pytest.mark.usefixtures("tools")

CLUSTER_LIST = ("k3d", "cluster", "list", "-o", "json")
NODE_LIST = ("k3d", "node", "list", "-o", "json")
CONFIG_VIEW = ("kubectl", "config", "view", "-o", "json")


@pytest.fixture
def k3d_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")


@pytest.fixture
def ports_free(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The machine's real 8080/6443 may be busy: record the probes instead (the real probe
    has its own tests below, with a real socket)."""
    probed: list[int] = []

    def probe(port: int) -> str:
        probed.append(port)
        return ""

    monkeypatch.setattr(_ports, "port_unavailable", probe)
    return probed


def answers(**extra: Any) -> dict[Any, Any]:
    """A Docker host with no k3d cluster yet and an empty kubeconfig."""
    base: dict[Any, Any] = {
        cmd(*DOCKER_INFO): ok("24.0.7"),
        cmd(*CLUSTER_LIST): ok([]),
        cmd(*CONFIG_VIEW): ok({"contexts": [], "clusters": []}),
    }
    base.update(extra)
    return base


def data(tmp_path: Path, env: str = "local") -> Path:
    return tmp_path / "data" / env


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def wait(context: str, timeout: int = 180, kubeconfig: str = "") -> list[str]:
    flags = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return [
        "kubectl",
        *flags,
        "--context",
        context,
        "wait",
        "--for=condition=Ready",
        "nodes",
        "--all",
        f"--timeout={timeout}s",
    ]


# --- create ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("k3d_env")
def test_create_writes_the_config_runs_k3d_and_waits_for_nodes(
    tmp_path: Path, ports_free: list[int]
) -> None:
    config = data(tmp_path) / "k3d-prism-local.yaml"
    c = shell(
        answers(
            **{
                cmd("k3d", "cluster", "create", "--config", str(config)): ok(),
                cmd(*wait("k3d-prism-local")): ok(),
            }
        )
    )
    cluster.create(c)
    assert commands(c) == [
        list(DOCKER_INFO),
        list(CLUSTER_LIST),
        list(CONFIG_VIEW),
        ["k3d", "cluster", "create", "--config", str(config)],
        wait("k3d-prism-local"),
        # which instance was made, for the ownership marker
        ["kubectl", "--context", "k3d-prism-local", "get", "namespace", "kube-system", "-o",
         "jsonpath={.metadata.uid}"],
    ]  # fmt: skip
    assert ports_free == [8080, 8443, 50051, 6443]
    written = yaml.safe_load(config.read_text())
    assert written["metadata"] == {"name": "prism-local"}
    assert (data(tmp_path) / "local-storage").is_dir()
    marker = json.loads((data(tmp_path) / "clusters" / "k3d-prism-local.json").read_text())
    assert (marker["provider"], marker["name"], marker["created_by"]) == (
        "k3d",
        "prism-local",
        "prism-tasks",
    )


def test_create_for_dev_with_registry_tuning_and_own_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ports_free: list[int]
) -> None:
    kubeconfig = tmp_path / "kube" / "config"
    for key, value in {
        "PRISM_ENV": "dev",
        "PRISM_CLUSTER_HTTP_PORT": "18080",
        "PRISM_CLUSTER_WAIT_TIMEOUT": "90",
        "PRISM_CLUSTER_REGISTRY": "true",
        "PRISM_CLUSTER_KUBECONFIG": str(kubeconfig),
        "PRISM_IMAGES_REGISTRY_PORT": "5999",
    }.items():
        monkeypatch.setenv(key, value)
    config = data(tmp_path, "dev") / "k3d-prism-dev.yaml"
    view = ("kubectl", "--kubeconfig", str(kubeconfig), "config", "view", "-o", "json")
    merge = (
        "k3d",
        "kubeconfig",
        "merge",
        "prism-dev",
        "--kubeconfig-switch-context=false",
        "--output",
        str(kubeconfig),
    )
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster("prism-local")]),
            cmd(*view): ok({}),
            cmd("k3d", "registry", "list", "-o", "json"): ok([]),
            cmd("k3d", "registry", "create", "prism-registry", "--port", "5999"): ok(),
            cmd("k3d", "cluster", "create", "--config", str(config)): ok(),
            cmd(*merge): ok(),
            cmd(*wait("k3d-prism-dev", 90, str(kubeconfig))): ok(),
        }
    )
    cluster.create(c, provider="k3d", tuning=True)
    assert changes(c) == [
        ["k3d", "registry", "create", "prism-registry", "--port", "5999"],
        ["k3d", "cluster", "create", "--config", str(config)],
        list(merge),
        wait("k3d-prism-dev", 90, str(kubeconfig)),
    ]
    assert ports_free == [18080, 8543, 50151, 6543, 5999]
    written = yaml.safe_load(config.read_text())
    assert written["registries"] == {"use": ["k3d-prism-registry:5999"]}
    assert written["ports"][0]["port"] == "18080:80"
    assert written["options"]["kubeconfig"]["updateDefaultKubeconfig"] is False
    assert "--kube-apiserver-arg=max-requests-inflight=400" in [
        a["arg"] for a in written["options"]["k3s"]["extraArgs"]
    ]


@pytest.mark.usefixtures("k3d_env")
def test_create_reuses_an_existing_registry(tmp_path: Path, monkeypatch, ports_free) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    config = data(tmp_path) / "k3d-prism-local.yaml"
    registry = [
        {
            "name": "k3d-prism-registry",
            "role": "registry",
            "portMappings": {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5555"}]},
        }
    ]
    c = shell(
        answers(
            **{
                cmd("k3d", "registry", "list", "-o", "json"): ok(registry),
                cmd("k3d", "cluster", "create", "--config", str(config)): ok(),
                cmd(*wait("k3d-prism-local")): ok(),
            }
        )
    )
    cluster.create(c)
    assert ["k3d", "registry", "create", "prism-registry", "--port", "5555"] not in commands(c)
    assert yaml.safe_load(config.read_text())["registries"] == {"use": ["k3d-prism-registry:5555"]}


@pytest.mark.usefixtures("k3d_env", "ports_free")
def test_create_leaves_a_matching_cluster_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"{data(tmp_path) / 'local-storage'}:/var/lib/rancher/k3s/storage"
    c = shell(
        answers(
            **{
                cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
                cmd(*NODE_LIST): ok(k3d_nodes(volumes=[storage])),
            }
        )
    )
    cluster.create(c)
    assert changes(c) == []
    assert "already exists (k3d, running) and matches the configuration" in capsys.readouterr().out
    assert not data(tmp_path).exists()


@pytest.mark.usefixtures("k3d_env", "ports_free")
def test_create_reports_how_an_existing_cluster_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = shell(
        answers(
            **{
                cmd(*CLUSTER_LIST): ok([k3d_cluster(agents=1, running=False)]),
                cmd(*NODE_LIST): ok(
                    k3d_nodes(
                        agents=1, ports=[(9080, 80), (8443, 443), (50051, 50051), (6443, 6443)]
                    )
                ),
            }
        )
    )
    cluster.create(c)
    out = capsys.readouterr().out
    assert changes(c) == []
    assert "already exists (k3d, stopped (`inv cluster.start` starts it)); left unchanged" in out
    assert "agents is 1 (config: 2)" in out
    assert "host port for 80 (http_port) is 9080 (config: 8080)" in out
    assert "storage volume is another directory" in out


# --- refusals: nothing runs, nothing is written ---------------------------------------------


def assert_nothing_changed(c: Any, tmp_path: Path) -> None:
    """No k3d create (no command that changes anything) ran and no file was written."""
    assert not any(argv[:3] == ["k3d", "cluster", "create"] for argv in commands(c))
    assert changes(c) == []
    assert files_under(tmp_path / "data") == []


@pytest.mark.usefixtures("k3d_env")
def test_port_in_use_names_the_port_and_the_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        c = shell(answers())
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PRISM_CLUSTER_GRPC_PORT", str(port))
            mp.setattr(_ports, "port_unavailable", _only_really_probe(port))
            with pytest.raises(Exit) as caught:
                cluster.create(c)
    assert str(caught.value.message) == (
        f"host port {port} (cluster.grpc_port, environment local) is already in use; "
        "set PRISM_CLUSTER_GRPC_PORT to a free port or choose another PRISM_ENV"
    )
    assert_nothing_changed(c, tmp_path)
    assert not (tmp_path / "data").exists()


def _only_really_probe(port: int):  # type: ignore[no-untyped-def]
    real = _ports.port_unavailable
    return lambda candidate: real(candidate) if candidate == port else ""


def test_real_port_probe_sees_listening_sockets_on_any_address() -> None:
    for address in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as busy:
            busy.bind((address, 0))
            busy.listen()
            assert _ports.port_unavailable(busy.getsockname()[1]) == "is already in use"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert _ports.port_unavailable(port) == ""


@pytest.mark.usefixtures("k3d_env", "ports_free")
def test_the_same_port_twice_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRISM_CLUSTER_HTTPS_PORT", "8080")
    c = shell(answers())
    with pytest.raises(
        Exit,
        match=r"host port 8080 is configured twice \(cluster.http_port and "
        r"cluster.https_port\); set PRISM_CLUSTER_HTTPS_PORT to another port",
    ):
        cluster.create(c)
    assert_nothing_changed(c, tmp_path)


@pytest.mark.usefixtures("k3d_env", "ports_free")
@pytest.mark.parametrize(
    ("name", "message"),
    [
        # checked where the setting enters: a DNS label of at most 32 (k3d's own limit)
        ("Prism_Local", r"cluster.name\)='Prism_Local' is not a cluster name: use at most 32"),
        ("-prism", r"cluster.name\)='-prism' is not a cluster name"),
        ("p" * 33, r"is not a cluster name: use at most 32 lowercase letters"),
    ],
)
def test_a_name_k3d_would_reject_is_refused_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_NAME", name)
    c = shell(answers())
    with pytest.raises(Exit, match=message):
        cluster.create(c)
    assert_nothing_changed(c, tmp_path)
    assert not (tmp_path / "data").exists()


def test_names_k3d_accepts_pass() -> None:
    for name in ("prism-local", "a", "prism.dev", "p" * 32, "Prism-2"):
        _k3d.validate_name(name)


@pytest.mark.usefixtures("ports_free")
def test_no_docker_daemon_with_k3d_chosen_is_one_clear_error(tmp_path: Path) -> None:
    c = shell({cmd(*DOCKER_INFO): fail("Cannot connect to the Docker daemon")})
    with pytest.raises(Exit) as caught:
        cluster.create(c, provider="k3d")
    assert str(caught.value.message).startswith(
        "the k3d provider needs a Docker daemon, but `docker info` does not answer; start Docker"
    )
    assert commands(c) == [list(DOCKER_INFO)]
    assert not (tmp_path / "data").exists()


@pytest.mark.usefixtures("k3d_env", "ports_free")
def test_a_foreign_kubeconfig_context_of_that_name_is_refused(tmp_path: Path) -> None:
    view = {
        "contexts": [{"name": "k3d-prism-local", "context": {"cluster": "shared", "user": "u"}}],
        "clusters": [{"name": "shared", "cluster": {"server": "https://10.20.0.5:6443"}}],
    }
    c = shell(answers(**{cmd(*CONFIG_VIEW): ok(view)}))
    with pytest.raises(Exit) as caught:
        cluster.create(c)
    assert str(caught.value.message) == (
        "kubeconfig context k3d-prism-local already exists and points at "
        "https://10.20.0.5:6443, not at this cluster (https://127.0.0.1:6443); remove it with "
        "`kubectl config delete-context k3d-prism-local` or choose another PRISM_CLUSTER_NAME"
    )
    assert_nothing_changed(c, tmp_path)
    assert not (tmp_path / "data").exists()


@pytest.mark.usefixtures("k3d_env", "ports_free")
def test_a_leftover_context_of_this_cluster_is_refreshed(tmp_path: Path) -> None:
    view = {
        "contexts": [{"name": "k3d-prism-local", "context": {"cluster": "k3d-prism-local"}}],
        "clusters": [{"name": "k3d-prism-local", "cluster": {"server": "https://127.0.0.1:6443"}}],
    }
    config = data(tmp_path) / "k3d-prism-local.yaml"
    c = shell(
        answers(
            **{
                cmd(*CONFIG_VIEW): ok(view),
                cmd("k3d", "cluster", "create", "--config", str(config)): ok(),
                cmd(*wait("k3d-prism-local")): ok(),
            }
        )
    )
    cluster.create(c)
    assert ["k3d", "cluster", "create", "--config", str(config)] in changes(c)


@pytest.mark.usefixtures("k3d_env", "ports_free")
@pytest.mark.parametrize(
    ("disable", "message"),
    [
        ("traefik,servicelb", "refusing to disable servicelb: the prism-proxy LoadBalancer"),
        ("metrics-server", "refusing to disable metrics-server: the prism-proxy Horizontal"),
        ("local-storage", "refusing to disable local-storage"),
        ("istio", "cluster.disable: unknown k3s component 'istio'; only traefik, runtimes"),
    ],
)
def test_tuning_never_disables_what_the_stack_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disable: str, message: str
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_DISABLE", disable)
    c = shell(answers())
    with pytest.raises(Exit, match=message):
        cluster.create(c, tuning=True)
    assert_nothing_changed(c, tmp_path)
    assert not (tmp_path / "data").exists()


def test_traefik_may_be_kept_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_DISABLE", "")
    s = _settings.load(shell({}))
    assert "k3s" not in _k3d.config(s, Target("k3d", "x", "k3d-x", "", ""))["options"]


# --- start / stop / delete / purge / list / kubeconfig --------------------------------------


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[Path]:
    """A cluster prism-tasks created earlier: its marker is in the data dir."""
    c = shell({})
    _guard.record_created(c, Target("k3d", "prism-local", "k3d-prism-local", "", "test"))
    (data(tmp_path) / "local-storage").mkdir(parents=True)
    (data(tmp_path) / "local-storage" / "pvc-data").write_text("keep me")
    yield data(tmp_path) / "clusters" / "k3d-prism-local.json"


EXISTING = {cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*CLUSTER_LIST): ok([k3d_cluster()])}


@pytest.mark.usefixtures("k3d_env")
def test_start_starts_and_waits() -> None:
    c = shell(
        {
            **EXISTING,
            cmd("k3d", "cluster", "start", "prism-local"): ok(),
            cmd(*wait("k3d-prism-local")): ok(),
        }
    )
    cluster.start(c)
    assert changes(c) == [["k3d", "cluster", "start", "prism-local"], wait("k3d-prism-local")]


@pytest.mark.usefixtures("k3d_env", "owned")
def test_stop_stops_a_cluster_we_created() -> None:
    c = shell({**EXISTING, cmd("k3d", "cluster", "stop", "prism-local"): ok()})
    cluster.stop(c)
    assert changes(c) == [["k3d", "cluster", "stop", "prism-local"]]


@pytest.mark.usefixtures("k3d_env")
@pytest.mark.parametrize("task", [cluster.stop, cluster.delete])
def test_destructive_tasks_refuse_a_cluster_we_did_not_create(task) -> None:  # type: ignore[no-untyped-def]
    c = shell(EXISTING)
    with pytest.raises(Exit) as caught:
        task(c)
    assert str(caught.value.message) == (
        "cluster prism-local was not created by prism-tasks; name it explicitly with "
        "PRISM_CLUSTER_NAME=prism-local to act on it"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_purge_refuses_a_foreign_cluster_before_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked anyway"))
    c = shell(EXISTING)
    with pytest.raises(Exit, match="was not created by prism-tasks"):
        cluster.purge(c)
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_an_explicitly_named_cluster_may_be_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")
    c = shell({**EXISTING, cmd("k3d", "cluster", "delete", "prism-local"): ok()})
    cluster.delete(c)
    assert changes(c) == [["k3d", "cluster", "delete", "prism-local"]]


@pytest.mark.usefixtures("k3d_env")
def test_delete_keeps_the_data_and_forgets_the_cluster(tmp_path: Path, owned: Path) -> None:
    c = shell({**EXISTING, cmd("k3d", "cluster", "delete", "prism-local"): ok()})
    cluster.delete(c)
    assert changes(c) == [["k3d", "cluster", "delete", "prism-local"]]
    assert (data(tmp_path) / "local-storage" / "pvc-data").read_text() == "keep me"
    assert not owned.exists()


@pytest.mark.usefixtures("k3d_env")
def test_delete_of_a_missing_cluster_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*CLUSTER_LIST): ok([])})
    cluster.delete(c)
    assert changes(c) == []
    assert "does not exist (k3d); nothing to delete" in capsys.readouterr().out


@pytest.mark.usefixtures("k3d_env", "owned")
def test_purge_backups_yes_deletes_the_cluster_and_the_whole_data_dir(tmp_path: Path) -> None:
    c = shell(
        {
            **EXISTING,
            cmd("k3d", "cluster", "delete", "prism-local"): ok(),
            cmd("rm", "-rf", str(data(tmp_path))): ok(),
        }
    )
    cluster.purge(c, yes=True, backups=True)
    assert changes(c) == [
        ["k3d", "cluster", "delete", "prism-local"],
        ["rm", "-rf", str(data(tmp_path))],
    ]


def test_purge_keeps_the_backups_unless_asked(tmp_path: Path) -> None:
    """The command purge runs, run for real on a data directory with backups in it."""
    import subprocess

    directory = tmp_path / "data-dir"
    (directory / "backups").mkdir(parents=True)
    (directory / "backups" / "postgres-20250101-000000.dump").write_text("keep")
    (directory / "local-storage" / "pvc").mkdir(parents=True)
    (directory / "k3d-prism-local.yaml").write_text("x")
    subprocess.run(cluster.purge_command(str(directory), keep_backups=True), check=True)
    assert sorted(p.name for p in directory.iterdir()) == ["backups"]
    assert (directory / "backups" / "postgres-20250101-000000.dump").read_text() == "keep"
    gone = tmp_path / "never-made"
    subprocess.run(cluster.purge_command(str(gone), keep_backups=True), check=True)


@pytest.mark.usefixtures("k3d_env", "owned")
def test_purge_asks_and_a_no_removes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    c = shell(EXISTING)
    with pytest.raises(Exit, match="cancelled; nothing was changed"):
        cluster.purge(c)
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_list_shows_k3d_clusters(capsys: pytest.CaptureFixture[str]) -> None:
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster(), k3d_cluster("prism-dev")]),
        }
    )
    cluster.list_(c)
    assert capsys.readouterr().out == "prism-local\nprism-dev\n"
    assert commands(c) == [list(DOCKER_INFO), list(CLUSTER_LIST)]


@pytest.mark.usefixtures("k3d_env")
def test_list_as_json_is_the_provider_and_the_cluster_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster(), k3d_cluster("prism-dev")]),
        }
    )
    cluster.list_(c, json=True)
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["provider", "clusters"]  # the documented keys, in that order
    assert document == {"provider": "k3d", "clusters": ["prism-local", "prism-dev"]}


@pytest.mark.usefixtures("k3d_env")
def test_kubeconfig_merges_the_context_without_switching(capsys) -> None:  # type: ignore[no-untyped-def]
    merge = [
        "k3d",
        "kubeconfig",
        "merge",
        "prism-local",
        "--kubeconfig-switch-context=false",
        "--kubeconfig-merge-default",
    ]
    c = shell({**EXISTING, cmd(*merge): ok()})
    cluster.kubeconfig(c)
    assert changes(c) == [merge]
    assert "context k3d-prism-local" in capsys.readouterr().out


# --- the guard holds for the simulated cluster too ------------------------------------------


def test_kwok_delete_is_guarded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell({cmd("kwokctl", "get", "clusters"): ok("prism-local\n")})
    with pytest.raises(Exit, match="cluster prism-local was not created by prism-tasks"):
        cluster.delete(c)
    assert changes(c) == []


def test_kwok_delete_of_a_cluster_we_created(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell(
        {
            cmd("kwokctl", "get", "clusters"): ok("prism-local\n"),
            cmd("kwokctl", "delete", "cluster", "--name", "prism-local"): ok(),
        }
    )
    _guard.record_created(c, Target("kwok", "prism-local", "kwok-prism-local", "", "test"))
    cluster.delete(c)
    assert changes(c) == [["kwokctl", "delete", "cluster", "--name", "prism-local"]]
    assert not (data(tmp_path) / "clusters" / "kwok-prism-local.json").exists()


# --- the same refusals through the real command line ----------------------------------------


def scripted(bin_dir: Path, tool: str, body: str) -> None:
    """Replace a fake tool with a script that logs its arguments and answers queries."""
    path = bin_dir / tool
    path.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{bin_dir}/calls.log"\n{body}\n')
    path.chmod(0o755)


def assert_one_clear_line(result, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == expected, result.stderr


def test_cli_create_without_docker_daemon(tmp_path: Path, tools: Path) -> None:  # noqa: F811
    scripted(tools, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    result = inv("cluster.create", "--provider", "k3d")
    assert_one_clear_line(
        result,
        "the k3d provider needs a Docker daemon, but `docker info` does not answer; start "
        "Docker, or use the simulated cluster with PRISM_CLUSTER_PROVIDER=kwok",
    )
    assert (tools / "calls.log").read_text() == "docker info --format {{.ServerVersion}}\n"
    assert not (tmp_path / "data").exists()


def test_cli_create_with_a_name_k3d_rejects(tmp_path: Path, tools: Path) -> None:  # noqa: F811
    scripted(tools, "docker", "echo 24.0.7")
    scripted(tools, "k3d", '[ "$*" = "cluster list -o json" ] && echo "[]" && exit 0; exit 99')
    result = inv("cluster.create", "--provider", "k3d", env={"PRISM_CLUSTER_NAME": "prism_local"})
    assert_one_clear_line(
        result,
        "PRISM_CLUSTER_NAME (cluster.name)='prism_local' is not a cluster name: use at most 32 "
        "lowercase letters, digits and '-', starting and ending with a letter or digit",
    )
    assert not (tools / "calls.log").exists()  # refused where the setting enters: nothing ran
    assert not (tmp_path / "data").exists()


@pytest.mark.usefixtures("k3d_env")
def test_a_cluster_that_answered_is_probed_once_per_run_until_it_is_stopped() -> None:
    """`inv cluster.create deploy.all`: the pre-task's probe serves the task too (on a remote
    host each probe is an SSH round trip); stopping the cluster forgets the answer."""
    readyz = cmd("kubectl", "--context", "k3d-prism-local", "get", "--raw", "/readyz")
    c = shell({readyz: ok("ok")})

    t = _target.require_reachable(c)
    assert _target.require_reachable(c) == t
    assert commands(c) == [shlex.split(readyz)]

    _target.forget_reachable(c, t)
    _target.require_reachable(c)
    assert len(commands(c)) == 2


@pytest.mark.usefixtures("k3d_env")
def test_an_interrupted_create_leaves_the_cluster_it_made_deletable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """^C while k3d is still creating: the cluster exists, so it is recorded as ours."""

    c = shell(answers(**{cmd(*CLUSTER_LIST): [ok([]), ok([k3d_cluster("prism-local")])]}))

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_k3d, "create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cluster.create(c)
    assert _guard.is_owned(c, _target.resolve(c))
