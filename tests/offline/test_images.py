"""images.*: docker build per image, import only what the nodes lack (guide correction 12), and the
local-registry alternative (guide correction 11) — as exact docker / k3d argument lists."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from invoke import Exit
from support.fakes import (
    CLUSTER_LIST,
    DOCKER_INFO,
    IMAGE_NAMES,
    NODE_LIST,
    REGISTRY_LIST,
    changes,
    cmd,
    commands,
    crictl,
    fail,
    held,
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
from support.fakes import NODES as K3D_NODES
from support.fakes import prism_repo as prism_repo_fixture

from tasks import images

pytestmark = pytest.mark.usefixtures("tools")

NAMES = list(IMAGE_NAMES)
REFS = [f"{name}:latest" for name in NAMES]
NODES = list(K3D_NODES)
prism_repo = prism_repo_fixture


# --- build ----------------------------------------------------------------------------------


def test_build_runs_docker_build_for_every_image(prism_repo: Path) -> None:
    builds = [
        ["docker", "build", "-t", ref, "-f", f"{prism_repo}/cmd/{name}/Dockerfile", str(prism_repo)]
        for name, ref in zip(NAMES, REFS, strict=True)
    ]
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), **{cmd(*argv): ok() for argv in builds}})
    images.build(c)
    assert commands(c) == [list(DOCKER_INFO), *builds]


def test_build_with_custom_layout_tag_and_subset(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("prism-admin", "prism-proxy"):
        (prism_repo / name).mkdir()
        (prism_repo / name / "Containerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("PRISM_IMAGES_DOCKERFILE", "{name}/Containerfile")
    monkeypatch.setenv("PRISM_IMAGES_CONTEXT", "{name}")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "dev")
    builds = [
        [
            "docker",
            "build",
            "-t",
            f"{name}:dev",
            "-f",
            f"{prism_repo}/{name}/Containerfile",
            f"{prism_repo}/{name}",
        ]
        for name in ("prism-proxy", "prism-admin")
    ]
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), **{cmd(*argv): ok() for argv in builds}})
    images.build(c, only="prism-proxy,prism-admin")
    assert changes(c) == builds


def test_build_without_the_source_checkout_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    c = shell({})
    with pytest.raises(Exit) as caught:
        images.build(c)
    assert str(caught.value.message) == (
        f"Prism source directory {tmp_path / 'nowhere'} does not exist; clone the Prism "
        "repository there or set PRISM_IMAGES_SOURCE_DIR (images.source_dir)"
    )
    assert commands(c) == []


def test_build_with_one_dockerfile_missing_builds_nothing(prism_repo: Path) -> None:
    (prism_repo / "cmd" / "mailbox-runner" / "Dockerfile").unlink()
    c = shell({})
    with pytest.raises(Exit, match=r"no Dockerfile for mailbox-runner at .*cmd/mailbox-runner"):
        images.build(c)
    assert commands(c) == []


def test_unknown_image_and_bad_pattern_are_clear(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Exit, match="unknown image 'prism-ui'; choose from: prism-admin"):
        images.build(shell({}), only="prism-ui")
    monkeypatch.setenv("PRISM_IMAGES_DOCKERFILE", "cmd/{image}/Dockerfile")
    with pytest.raises(Exit, match=r"the only placeholder is \{name\}"):
        images.build(shell({}))


def test_build_without_docker_daemon_is_one_clear_error(prism_repo: Path) -> None:
    c = shell({cmd(*DOCKER_INFO): fail("Cannot connect to the Docker daemon")})
    with pytest.raises(Exit, match="needs a Docker daemon, but `docker info` does not answer"):
        images.build(c)
    assert changes(c) == []


# --- import ---------------------------------------------------------------------------------


def cluster_answers(**extra: object) -> dict[object, object]:
    base: dict[object, object] = {
        cmd(*DOCKER_INFO): ok("24.0.7"),
        cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
        cmd(*NODE_LIST): ok(k3d_nodes() + k3d_nodes("prism-dev", agents=0)),
        **{image_inspect(ref): ok(image_id(ref) + "\n") for ref in REFS},
    }
    base.update(extra)
    return base


@pytest.mark.usefixtures("k3d_env")
def test_import_skips_images_every_node_already_holds(capsys: pytest.CaptureFixture[str]) -> None:
    answers = cluster_answers(
        **{
            crictl(NODES[0]): ok(held("prism-admin:latest", "prism-proxy:latest")),
            crictl(NODES[1]): ok(held("prism-admin:latest", "prism-proxy:latest")),
            # agent-1 holds an older prism-proxy: same tag, other ID
            crictl(NODES[2]): ok(
                {
                    "images": held("prism-admin:latest")["images"]  # type: ignore[operator]
                    + held("prism-proxy:latest", stale=True)["images"]  # type: ignore[operator]
                }
            ),
        }
    )
    expected_import = ["k3d", "image", "import", *REFS[1:], "-c", "prism-local"]
    answers[cmd(*expected_import)] = ok()
    c = shell(answers)
    images.import_(c)
    assert commands(c) == [
        list(DOCKER_INFO),
        list(CLUSTER_LIST),
        *[["docker", "image", "inspect", "--format", "{{.Id}}", ref] for ref in REFS],
        list(NODE_LIST),
        *[["docker", "exec", node, "crictl", "images", "-o", "json"] for node in NODES],
        expected_import,
    ]
    out = capsys.readouterr().out
    assert "already in cluster prism-local: prism-admin:latest" in out


@pytest.mark.usefixtures("k3d_env")
def test_import_with_everything_present_imports_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = shell(cluster_answers(**{crictl(node): ok(held(*REFS)) for node in NODES}))
    images.import_(c)
    assert changes(c) == []
    assert "nothing to import: cluster prism-local holds every image" in capsys.readouterr().out


@pytest.mark.usefixtures("k3d_env")
def test_import_force_and_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_ENV", "dev")
    answers = cluster_answers(
        **{
            cmd(*CLUSTER_LIST): ok([k3d_cluster("prism-dev", agents=0)]),
            crictl("k3d-prism-dev-server-0"): ok(held(*REFS)),
            cmd("k3d", "image", "import", "prism-proxy:latest", "-c", "prism-dev"): ok(),
        }
    )
    c = shell(answers)
    images.import_(c, only="prism-proxy", force=True)
    assert changes(c) == [["k3d", "image", "import", "prism-proxy:latest", "-c", "prism-dev"]]


@pytest.mark.usefixtures("k3d_env")
def test_import_of_an_image_never_built_says_how_to_build_it() -> None:
    c = shell(cluster_answers(**{image_inspect("mailbox-runner:latest"): fail("No such image")}))
    with pytest.raises(Exit) as caught:
        images.import_(c)
    assert str(caught.value.message) == (
        "image mailbox-runner:latest is not in the local Docker image store; build it with "
        "`inv images.build` (or `docker pull` it)"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_import_into_a_stopped_cluster_says_start_it() -> None:
    c = shell(cluster_answers(**{cmd(*NODE_LIST): ok(k3d_nodes(running=False))}))
    with pytest.raises(Exit, match="cluster prism-local is not running .* run `inv cluster.start`"):
        images.import_(c)
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_import_without_the_cluster_says_create_it() -> None:
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*CLUSTER_LIST): ok([])})
    with pytest.raises(Exit, match="cluster prism-local does not exist .*`inv cluster.create`"):
        images.import_(c)


def test_import_into_the_simulated_cluster_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell({})
    with pytest.raises(Exit, match="the cluster provider is kwok .* k3d clusters only"):
        images.import_(c)
    assert commands(c) == []


def test_import_into_a_shared_cluster_is_refused_naming_the_registry_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    c = shell({})
    with pytest.raises(Exit) as caught:
        images.import_(c)
    assert caught.value.message == (
        "the cluster provider is context (an existing cluster, by its context): images go into "
        "k3d clusters only; a shared cluster pulls them: push them to its registry and set "
        "PRISM_IMAGES_REGISTRY to it"
    )
    assert commands(c) == []


def test_reference_normalization_matches_docker() -> None:
    from tasks._providers.k3d_images import normalize_ref

    assert normalize_ref("prism-admin:latest") == "docker.io/library/prism-admin:latest"
    assert normalize_ref("prism-admin") == "docker.io/library/prism-admin:latest"
    assert normalize_ref("bitnami/redis:7") == "docker.io/bitnami/redis:7"
    assert normalize_ref("localhost:5555/prism-admin:v1") == "localhost:5555/prism-admin:v1"
    assert normalize_ref("ghcr.io/x/y:1") == "ghcr.io/x/y:1"


# --- registry and push ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_registry_is_created_once(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY_PORT", str(port))
    create = ["k3d", "registry", "create", "prism-registry", "--port", str(port)]
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok([]), cmd(*create): ok()})
    images.registry(c)
    assert changes(c) == [create]

    again = shell(
        {cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok(registry_node(str(port)))}
    )
    images.registry(again)
    assert changes(again) == []


def test_registry_on_another_port_is_reported() -> None:
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok(registry_node("5000"))})
    with pytest.raises(Exit) as caught:
        images.registry(c)
    assert str(caught.value.message) == (
        "registry k3d-prism-registry already exists on host port 5000, not 5555; set "
        "PRISM_IMAGES_REGISTRY_PORT=5000 or delete it with `k3d registry delete k3d-prism-registry`"
    )
    assert changes(c) == []


def test_registry_port_in_use_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("PRISM_IMAGES_REGISTRY_PORT", str(port))
        c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok([])})
        with pytest.raises(Exit, match=f"host port {port} \\(images.registry_port\\) is already"):
            images.registry(c)
    assert changes(c) == []


def test_push_tags_and_pushes_to_localhost_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v1")
    refs = [f"{name}:v1" for name in NAMES]
    steps = []
    for ref in refs:
        steps += [
            ["docker", "tag", ref, f"localhost:5555/{ref}"],
            ["docker", "push", f"localhost:5555/{ref}"],
        ]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*REGISTRY_LIST): ok(registry_node()),
            **{image_inspect(ref): ok(image_id(ref)) for ref in refs},
            **{cmd(*argv): ok() for argv in steps},
        }
    )
    images.push(c)
    assert changes(c) == steps


def test_push_without_registry_says_create_it() -> None:
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok([])})
    with pytest.raises(
        Exit, match="registry k3d-prism-registry does not exist; run `inv images.registry`"
    ):
        images.push(c)
    assert changes(c) == []


def test_list_prints_the_configured_images(capsys: pytest.CaptureFixture[str]) -> None:
    images.list_(shell({}))
    assert capsys.readouterr().out.split() == REFS
