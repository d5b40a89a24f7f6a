"""images.reload, the edit-build-run loop: rebuild, load only the images whose ID changed,
restart only the workloads that run them; --watch until Ctrl-C. Docker and k3d are faked (exact
argument lists); the workload listing and the restart are the API functions, replaced here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from invoke import Exit, Result, UnexpectedExit
from support.fakes import (
    CLUSTER_LIST,
    DOCKER_INFO,
    IMAGE_NAMES,
    NODE_LIST,
    REFS,
    REGISTRY_LIST,
    build_argv,
    changes,
    cmd,
    commands,
    image_id,
    image_inspect,
    k3d_cluster,
    k3d_env,  # noqa: F401  (fixture)
    k3d_nodes,
    ok,
    registry_node,
    shell,
    tools,  # noqa: F401  (fixture)
)
from support.fakes import prism_repo as prism_repo_fixture

from tasks import images
from tasks._deploy import images as _images
from tasks._deploy import plan as _plan

pytestmark = pytest.mark.usefixtures("tools", "k3d_env", "named_cluster")
prism_repo = prism_repo_fixture

READYZ = cmd("kubectl", "--context", "k3d-prism-local", "get", "--raw", "/readyz")


@pytest.fixture
def named_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster the user named: restarting its workloads is allowed (guide correction 20)."""
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")


def workload(kind: str, namespace: str, name: str, *images: str, init: str = "") -> dict[str, Any]:
    """A Deployment or StatefulSet as the API lists it."""
    pod: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]
    }
    if init:
        pod["initContainers"] = [{"name": "init", "image": init}]
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {}, "spec": pod}},
    }


def deployed_stack(prefix: str = "", tag: str = "latest") -> list[dict[str, Any]]:
    return [
        workload("Deployment", "prism", "prism-admin", f"{prefix}prism-admin:{tag}"),
        workload("Deployment", "prism", "prism-proxy", f"{prefix}prism-proxy:{tag}"),
        # an init container running the changed image counts too
        workload(
            "StatefulSet",
            "prism",
            "keyvalue-runner",
            f"{prefix}keyvalue-runner:{tag}",
            init=f"{prefix}prism-proxy:{tag}",
        ),
        # another tag of the changed image is another image
        workload("Deployment", "prism", "proxy-canary", f"{prefix}prism-proxy:v0"),
        workload("StatefulSet", "prism-backends", "redis", "redis:7-alpine"),
    ]


@pytest.fixture
def restarts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The rollout restarts asked for (the API's part of `deploy.restart`), as (name, timeout)."""
    asked: list[tuple[str, int]] = []

    def restart(c: Any, app: str, timeout: int) -> tuple[str, str, str]:
        asked.append((app, timeout))
        return ("Deployment", "prism", app)

    monkeypatch.setattr(_plan, "restart", restart)
    return asked


def builds_changing(repo: Path, changed: str, tag: str = "latest") -> dict[object, object]:
    """Every image built again; only `changed` gets a new ID."""
    refs = [f"{name}:{tag}" for name in IMAGE_NAMES]
    return {
        **{
            image_inspect(ref): [
                ok(image_id(ref, "v1")),
                ok(image_id(ref, "v2" if ref.startswith(f"{changed}:") else "v1")),
            ]
            for ref in refs
        },
        **{cmd(*build_argv(repo, name, tag)): ok() for name in IMAGE_NAMES},
    }


def test_only_the_changed_image_is_imported_and_only_its_workloads_restarted(
    prism_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    restarts: list[tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_images, "deployed", lambda c: deployed_stack())
    importing = ["k3d", "image", "import", "prism-proxy:latest", "-c", "prism-local"]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            READYZ: ok("ok"),
            **builds_changing(prism_repo, "prism-proxy"),
            cmd(*importing): ok(),
        }
    )
    images.reload(c)
    inspects = [["docker", "image", "inspect", "--format", "{{.Id}}", ref] for ref in REFS]
    assert commands(c) == [
        list(DOCKER_INFO),
        list(CLUSTER_LIST),
        list(NODE_LIST),
        ["kubectl", "--context", "k3d-prism-local", "get", "--raw", "/readyz"],
        *inspects,
        *[build_argv(prism_repo, name) for name in IMAGE_NAMES],
        *inspects,
        importing,
    ]
    assert restarts == [("prism-proxy", 300), ("keyvalue-runner", 300)]  # deploy.timeout
    out = capsys.readouterr().out
    assert re.search(r"^prism-proxy:latest +built in \d+\.\ds, changed, imported$", out, re.M)
    assert re.search(
        r"^prism-admin:latest +built in \d+\.\ds, unchanged \(same image ID\)$", out, re.M
    )
    assert re.search(r"^imported 1 image\(s\) into cluster prism-local in \d+\.\ds$", out, re.M)
    assert re.search(
        r"^restarted Deployment prism/prism-proxy \(prism-proxy:latest\): new pods Ready in \d+\.\ds$",
        out,
        re.M,
    )
    assert "restarted StatefulSet prism/keyvalue-runner (prism-proxy:latest)" in out


def test_nothing_changed_loads_and_restarts_nothing(
    prism_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    restarts: list[tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_listing(c: Any) -> list[dict[str, Any]]:
        raise AssertionError("nothing changed: the workloads need not even be listed")

    monkeypatch.setattr(_images, "deployed", no_listing)
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            READYZ: ok("ok"),
            **builds_changing(prism_repo, "none"),
        }
    )
    images.reload(c, only="prism-proxy,prism-admin")
    assert changes(c) == [
        build_argv(prism_repo, "prism-proxy"),
        build_argv(prism_repo, "prism-admin"),
    ]
    assert restarts == []
    assert capsys.readouterr().out.endswith(
        "nothing changed: no image loaded, no workload restarted\n"
    )


def test_registry_mode_pushes_the_changed_image_and_restarts_by_registry_reference(
    prism_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    restarts: list[tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v1")
    registry = "k3d-prism-registry:5555/"
    monkeypatch.setattr(_images, "deployed", lambda c: deployed_stack(registry, "v1"))
    pushing = [
        ["docker", "tag", "prism-admin:v1", "localhost:5555/prism-admin:v1"],
        ["docker", "push", "localhost:5555/prism-admin:v1"],
    ]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*REGISTRY_LIST): ok(registry_node()),
            READYZ: ok("ok"),
            **builds_changing(prism_repo, "prism-admin", "v1"),
            **{cmd(*argv): ok() for argv in pushing},
        }
    )
    images.reload(c, timeout="42")
    assert changes(c) == [*[build_argv(prism_repo, n, "v1") for n in IMAGE_NAMES], *pushing]
    assert restarts == [("prism-admin", 42)]
    out = capsys.readouterr().out
    assert "pushed 1 image(s) to registry k3d-prism-registry in" in out


def test_a_changed_image_no_workload_runs_restarts_nothing(
    prism_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    restarts: list[tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_images, "deployed", lambda c: deployed_stack())
    importing = ["k3d", "image", "import", "mailbox-runner:latest", "-c", "prism-local"]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            READYZ: ok("ok"),
            **builds_changing(prism_repo, "mailbox-runner"),
            cmd(*importing): ok(),
        }
    )
    images.reload(c)
    assert changes(c)[-1] == importing
    assert restarts == []
    assert "no deployed workload runs mailbox-runner:latest: nothing to restart for it" in (
        capsys.readouterr().out
    )


# --- failures ---------------------------------------------------------------------------------


# --- clusters that take no images from here: one line, exit 0 ----------------------------------


def test_on_the_simulated_cluster_it_says_there_is_nothing_to_do(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell({})
    images.reload(c)  # returns: exit 0
    assert commands(c) == []
    assert capsys.readouterr().out == (
        "images: nothing to rebuild or load into cluster prism-local: the simulated cluster "
        "(kwok) runs no containers; `inv deploy.restart APP` restarts a workload\n"
    )


def test_on_the_simulated_cluster_watch_says_the_same_and_does_not_watch(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def watch(*args: object) -> None:
        raise AssertionError("nothing to watch for on the simulated cluster")

    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setattr(_images, "watch", watch)
    images.reload(shell({}), watch=True)
    assert capsys.readouterr().out.startswith("images: nothing to rebuild or load into cluster")


def test_on_a_shared_cluster_it_says_to_push_to_the_registry(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "ghcr.io/acme/prism")
    c = shell({})
    images.reload(c)
    assert commands(c) == []
    assert capsys.readouterr().out == (
        "images: nothing to rebuild or load into cluster staging: a shared cluster pulls the "
        "Prism images; push yours to ghcr.io/acme/prism (images.registry); "
        "`inv deploy.restart APP` restarts a workload\n"
    )


def test_on_the_simulated_cluster_bad_flags_are_still_refused(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    with pytest.raises(Exit, match="--timeout 'soon' is not a whole number of seconds"):
        images.reload(shell({}), timeout="soon")
    with pytest.raises(Exit, match="unknown image 'prism-ui'"):
        images.reload(shell({}), only="prism-ui")


def test_without_the_source_it_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7")})
    with pytest.raises(Exit, match="Prism source directory .*nowhere does not exist"):
        images.reload(c)
    assert changes(c) == []


def test_a_stopped_cluster_is_refused_before_any_build(prism_repo: Path) -> None:
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster(running=False)]),
            cmd(*NODE_LIST): ok(k3d_nodes(running=False)),
        }
    )
    with pytest.raises(Exit, match=r"cluster prism-local is not running .* `inv cluster.start`"):
        images.reload(c)
    assert changes(c) == []


def test_a_bad_timeout_is_refused_before_anything_runs(prism_repo: Path) -> None:
    c = shell({})
    with pytest.raises(Exit, match="--timeout 'soon' is not a whole number of seconds"):
        images.reload(c, timeout="soon")
    assert commands(c) == []


# --- which workloads: the API listing ---------------------------------------------------------


def test_deployed_lists_prism_workloads_of_both_namespaces_through_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks._kube import client as _kube
    from tasks._kube import workloads as _workloads

    asked: list[tuple[str, str, str]] = []
    api = object()

    @contextmanager
    def api_client(c: Any) -> Iterator[object]:
        yield api

    def items(given: object, path: str, selector: str, kind: str) -> list[dict[str, Any]]:
        assert given is api
        asked.append((path, selector, kind))
        if path == "/apis/apps/v1/namespaces/prism/deployments":
            return [workload("Deployment", "prism", "prism-proxy", "prism-proxy:latest")]
        return []

    monkeypatch.setattr(_kube, "api_client", api_client)
    monkeypatch.setattr(_workloads, "items", items)
    found = _images.deployed(shell({}))
    assert [item["metadata"]["name"] for item in found] == ["prism-proxy"]
    selector = "app.kubernetes.io/part-of=prism"
    assert sorted(asked) == sorted(
        (f"/apis/apps/v1/namespaces/{ns}/{plural}", selector, kind)
        for ns in ("prism", "prism-backends")
        for kind, plural in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"))
    )


def test_workloads_match_images_by_docker_reference() -> None:
    items = [
        workload("Deployment", "prism", "a", "docker.io/library/prism-proxy:latest"),
        workload("Deployment", "prism", "b", "prism-proxy"),  # no tag: latest
        workload("Deployment", "prism", "c", "prism-proxy:v2"),
    ]
    found = _images.workloads_using(items, ["prism-proxy:latest"])
    assert [key for key, _ in found] == [("Deployment", "prism", "a"), ("Deployment", "prism", "b")]


# --- --watch ----------------------------------------------------------------------------------


def test_watch_reloads_on_source_changes_and_stops_cleanly_on_ctrl_c(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = prism_repo / "cmd" / "prism-proxy" / "main.go"
    source.write_text("package main\n")
    (prism_repo / ".git").mkdir()
    (prism_repo / ".git" / "HEAD").write_text("ref: main\n")
    reloads: list[str] = []

    def reload(c: Any, only: str, timeout: object) -> None:
        reloads.append(only)
        if len(reloads) == 1:  # the first one's rollout timed out: reported, not the end
            raise Exit("restart: prism-proxy is not Ready after 300s", code=1)
        if len(reloads) == 2:
            raise UnexpectedExit(Result(command="docker build -t prism-proxy:latest", exited=1))

    edits = iter(
        [
            lambda: (prism_repo / ".git" / "HEAD").write_text("ref: other-branch\n"),  # ignored
            lambda: source.write_text("package main // edited\n"),  # reload: the build fails
            lambda: source.write_text("package main // fixed it\n"),  # reload again
        ]
    )

    def sleep(seconds: float) -> None:
        assert seconds == 2
        edit = next(edits, None)
        if edit is None:
            raise KeyboardInterrupt  # Ctrl-C while waiting
        edit()

    monkeypatch.setattr(_images, "preflight", lambda c, only, timeout: None)
    monkeypatch.setattr(_images, "reload", reload)
    monkeypatch.setattr(_images.time, "sleep", sleep)
    images.reload(shell({}), only="prism-proxy", watch=True, interval="2")  # returns: exit 0
    assert reloads == ["prism-proxy"] * 3  # at the start, then once per source change
    captured = capsys.readouterr()
    assert captured.out.count("changed: cmd/prism-proxy/main.go; reloading") == 2
    assert captured.out.endswith("stopped watching\n")
    assert captured.err.splitlines() == [
        "reload failed: restart: prism-proxy is not Ready after 300s; watching for the next change",
        "reload failed: `docker build -t prism-proxy:latest` exited 1; watching for the next change",
    ]


def test_watch_checks_the_preconditions_once_first_and_ends_on_them(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reload(c: Any, only: str, timeout: object) -> None:
        raise AssertionError("nothing is built when a precondition fails")

    monkeypatch.setattr(_images, "reload", reload)
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*CLUSTER_LIST): ok([])})
    with pytest.raises(Exit, match="cluster prism-local does not exist .*`inv cluster.create`"):
        images.reload(c, watch=True)
    assert changes(c) == []


def test_interval_without_watch_is_refused(prism_repo: Path) -> None:
    c = shell({})
    with pytest.raises(Exit, match="--interval goes with --watch"):
        images.reload(c, interval="5")
    assert commands(c) == []
