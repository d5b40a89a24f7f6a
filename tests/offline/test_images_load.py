"""images.load, deploy.all's step before the workloads: build from the source when it is there,
then import into the k3d nodes what they lack, or push to the registry what it lacks — as exact
docker / k3d argument lists; one line on the simulated cluster; every failure before any change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Call, Config, Executor, Exit
from support.fakes import (
    CLUSTER_LIST,
    DOCKER_INFO,
    IMAGE_NAMES,
    NODE_LIST,
    NODES,
    REFS,
    REGISTRY_LIST,
    build_argv,
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
    no_such_image,
    ok,
    registry_node,
    shell,
    tools,  # noqa: F401  (fixture)
)
from support.fakes import prism_repo as prism_repo_fixture

import tasks
from tasks import cluster, deploy, images

pytestmark = pytest.mark.usefixtures("tools")
prism_repo = prism_repo_fixture


def inspect_argv(ref: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def import_argv(*refs: str) -> list[str]:
    return ["k3d", "image", "import", *refs, "-c", "prism-local"]


def lines(out: str) -> dict[str, str]:
    """The per-image lines: image reference -> what happened."""
    found = {}
    for line in out.splitlines():
        ref, _, rest = line.partition("  ")
        if ref in REFS or re.fullmatch(r"[a-z-]+:v1", ref):
            found[ref] = rest.strip()
    return found


# --- import mode ------------------------------------------------------------------------------


@pytest.mark.usefixtures("k3d_env")
def test_builds_then_imports_only_what_the_nodes_lack(
    prism_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every node holds the images of the last build; this build changes prism-proxy only."""
    built = {ref: ok(image_id(ref, "v2" if ref == "prism-proxy:latest" else "v1")) for ref in REFS}
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            **{crictl(node): ok(held(*REFS, version="v1")) for node in NODES},
            **{image_inspect(ref): built[ref] for ref in REFS},
            **{cmd(*build_argv(prism_repo, name)): ok() for name in IMAGE_NAMES},
            cmd(*import_argv("prism-proxy:latest")): ok(),
        }
    )
    images.load(c)
    assert commands(c) == [
        list(DOCKER_INFO),
        list(CLUSTER_LIST),
        list(NODE_LIST),
        *[["docker", "exec", node, "crictl", "images", "-o", "json"] for node in NODES],
        *[build_argv(prism_repo, name) for name in IMAGE_NAMES],
        *[inspect_argv(ref) for ref in REFS],
        import_argv("prism-proxy:latest"),
    ]
    out = capsys.readouterr().out
    per_image = lines(out)
    assert re.fullmatch(r"built in \d+\.\ds, imported", per_image["prism-proxy:latest"])
    for ref in REFS:
        if ref != "prism-proxy:latest":
            assert re.fullmatch(
                r"built in \d+\.\ds, unchanged: every node of prism-local holds it", per_image[ref]
            )
    assert re.search(r"^imported 1 image\(s\) into cluster prism-local in \d+\.\ds$", out, re.M)


@pytest.mark.usefixtures("k3d_env")
def test_without_the_source_it_imports_from_the_local_store_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            **{crictl(node): ok({"images": []}) for node in NODES},
            **{image_inspect(ref): ok(image_id(ref)) for ref in REFS},
            cmd(*import_argv(*REFS)): ok(),
        }
    )
    images.load(c)
    assert changes(c) == [import_argv(*REFS)]  # nothing built
    out = capsys.readouterr().out
    assert (
        f"using the local Docker store's images (no Prism source directory at "
        f"{tmp_path / 'nowhere'}): {', '.join(REFS)}" in out
    )
    assert set(lines(out).values()) == {"from the local Docker store, imported"}


@pytest.mark.usefixtures("k3d_env")
def test_no_build_uses_the_local_store_even_with_the_source_there(prism_repo: Path) -> None:
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            **{crictl(node): ok(held(*REFS)) for node in NODES},
            **{image_inspect(ref): ok(image_id(ref)) for ref in REFS},
        }
    )
    images.load(c, build=False)
    assert changes(c) == []  # nothing built, and every node holds every image


# --- registry mode ----------------------------------------------------------------------------


def manifest(ref: str) -> str:
    return cmd("docker", "manifest", "inspect", "--insecure", "-v", f"localhost:5555/{ref}")


def repo_digests(ref: str) -> str:
    return cmd("docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref)


MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def descriptor(ref: str, digest: str) -> dict[str, object]:
    """`docker manifest inspect -v` of a single-platform image."""
    return {
        "Ref": f"localhost:5555/{ref}",
        "Descriptor": {"mediaType": MEDIA_TYPE, "digest": digest, "size": 1234},
        "OCIManifest": {},
    }


@pytest.mark.usefixtures("k3d_env")
def test_registry_mode_pushes_what_the_registry_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """prism-admin's registry copy is the local image (its RepoDigests has the registry's
    digest); prism-proxy's is an older one; the others were never pushed."""
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v1")
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    refs = [f"{name}:v1" for name in IMAGE_NAMES]
    pushes = [
        argv
        for ref in refs[1:]
        for argv in (
            ["docker", "tag", ref, f"localhost:5555/{ref}"],
            ["docker", "push", f"localhost:5555/{ref}"],
        )
    ]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*REGISTRY_LIST): ok(registry_node()),
            **{image_inspect(ref): ok(image_id(ref)) for ref in refs},
            manifest("prism-admin:v1"): ok(descriptor("prism-admin:v1", "sha256:aaa")),
            repo_digests("prism-admin:v1"): ok(["localhost:5555/prism-admin@sha256:aaa"]),
            manifest("prism-proxy:v1"): ok(descriptor("prism-proxy:v1", "sha256:new")),
            repo_digests("prism-proxy:v1"): ok(["localhost:5555/prism-proxy@sha256:old"]),
            **{manifest(ref): fail("no such manifest") for ref in refs[2:]},
            **{cmd(*argv): ok() for argv in pushes},
        }
    )
    images.load(c)
    assert changes(c) == pushes
    out = capsys.readouterr().out
    per_image = lines(out)
    assert per_image["prism-admin:v1"] == (
        "from the local Docker store, unchanged: registry k3d-prism-registry holds it"
    )
    for ref in refs[1:]:
        assert re.fullmatch(r"from the local Docker store, pushed in \d+\.\ds", per_image[ref])
    assert (
        "pushed 5 image(s) (docker push sends only the layers the registry lacks); "
        "the cluster pulls k3d-prism-registry:5555/<image>:v1"
    ) in out


@pytest.mark.usefixtures("k3d_env")
def test_registry_mode_without_the_registry_says_create_it_and_builds_nothing(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*REGISTRY_LIST): ok([])})
    with pytest.raises(Exit) as caught:
        images.load(c)
    assert caught.value.message == (
        "registry k3d-prism-registry does not exist; run `inv images.registry`"
    )
    assert caught.value.code == 1
    assert changes(c) == []


# --- the simulated cluster and --dry ----------------------------------------------------------


def test_on_the_simulated_cluster_it_says_so_and_runs_nothing(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell({})
    images.load(c)
    assert commands(c) == []
    assert capsys.readouterr().out == (
        "images: nothing to load into cluster prism-local: the simulated cluster (kwok) runs "
        "no containers\n"
    )


def test_on_a_shared_cluster_it_says_to_push_to_the_registry_and_runs_nothing(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "registry.example.com:5000/prism")
    c = shell({})
    images.load(c)
    assert commands(c) == []
    assert capsys.readouterr().out == (
        "images: nothing to load into cluster staging: a shared cluster pulls the Prism images; "
        "push yours to registry.example.com:5000/prism (images.registry)\n"
    )


def test_on_a_shared_cluster_without_a_registry_it_names_the_setting(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    c = shell({})
    images.load(c)
    assert commands(c) == []
    out = capsys.readouterr().out
    assert out.startswith("images: nothing to load into cluster staging: a shared cluster pulls")
    assert "set PRISM_IMAGES_REGISTRY" in out and "simulated" not in out


@pytest.mark.usefixtures("k3d_env")
def test_a_k3d_cluster_that_pulls_from_a_registry_of_your_own_gets_nothing_loaded(
    prism_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "ghcr.io/acme/prism")
    c = shell({})
    images.load(c)
    assert commands(c) == []  # nothing built, imported or pushed
    assert capsys.readouterr().out == (
        "images: nothing to load into cluster prism-local: it pulls the Prism images from "
        "ghcr.io/acme/prism (images.registry); push yours there\n"
    )


@pytest.mark.usefixtures("k3d_env")
def test_dry_run_before_the_cluster_exists_prints_builds_and_import_and_changes_nothing(
    prism_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inv --dry cluster.create deploy.all` on a fresh machine: no cluster, no image yet.
    Only read-only queries run; the builds and the import are what --dry prints (what a build
    would make is unknown, so every image would be imported)."""
    builds = [build_argv(prism_repo, name) for name in IMAGE_NAMES]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([]),
            **{cmd(*argv): ok() for argv in builds},
            cmd(*import_argv(*REFS)): ok(),
        },
        run={"dry": True},
    )
    images.load(c)
    assert changes(c) == [*builds, import_argv(*REFS)]
    queries = [argv for argv in commands(c) if argv not in changes(c)]
    assert queries == [list(DOCKER_INFO), list(CLUSTER_LIST)]
    out = capsys.readouterr().out
    assert set(lines(out).values()) == {"would build, would import"}
    assert out.endswith("dry run: nothing was built, imported or pushed\n")


# --- failures: one line, before anything changes ----------------------------------------------


@pytest.mark.usefixtures("k3d_env")
def test_unknown_image_in_only_runs_nothing(prism_repo: Path) -> None:
    c = shell({})
    with pytest.raises(Exit) as caught:
        images.load(c, only="prism-admin,prism-ui")
    assert caught.value.message == (
        "unknown image 'prism-ui'; choose from: " + ", ".join(IMAGE_NAMES)
    )
    assert commands(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_docker_daemon_down_is_one_line(prism_repo: Path) -> None:
    c = shell({cmd(*DOCKER_INFO): fail("Cannot connect to the Docker daemon")})
    with pytest.raises(Exit) as caught:
        images.load(c)
    assert caught.value.message == (
        "the k3d provider needs a Docker daemon, but `docker info` does not answer; start "
        "Docker, or use the simulated cluster with PRISM_CLUSTER_PROVIDER=kwok"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_missing_cluster_says_create_it_and_builds_nothing(prism_repo: Path) -> None:
    c = shell({cmd(*DOCKER_INFO): ok("24.0.7"), cmd(*CLUSTER_LIST): ok([])})
    with pytest.raises(Exit) as caught:
        images.load(c)
    assert caught.value.message == (
        "cluster prism-local does not exist (k3d); run `inv cluster.create`"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_stopped_cluster_says_start_it_and_builds_nothing(prism_repo: Path) -> None:
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster(running=False)]),
            cmd(*NODE_LIST): ok(k3d_nodes(running=False)),
        }
    )
    with pytest.raises(Exit) as caught:
        images.load(c)
    assert caught.value.message == (
        "cluster prism-local is not running (k3d-prism-local-server-0, k3d-prism-local-agent-0, "
        "k3d-prism-local-agent-1 stopped); run `inv cluster.start`"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_an_image_neither_buildable_nor_present_is_one_line_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            **{crictl(node): ok({"images": []}) for node in NODES},
            **{image_inspect(ref): ok(image_id(ref)) for ref in REFS[:-1]},
            image_inspect("mailbox-runner:latest"): no_such_image("mailbox-runner:latest"),
        }
    )
    with pytest.raises(Exit) as caught:
        images.load(c)
    assert caught.value.message == (
        "image mailbox-runner:latest is neither in the local Docker image store nor buildable "
        f"(no Prism source directory at {tmp_path / 'nowhere'}); clone the Prism repository "
        "there or set PRISM_IMAGES_SOURCE_DIR (images.source_dir)"
    )
    assert changes(c) == []


@pytest.mark.usefixtures("k3d_env")
def test_an_image_store_that_cannot_answer_is_not_taken_for_a_missing_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(tmp_path / "nowhere"))
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd(*CLUSTER_LIST): ok([k3d_cluster()]),
            cmd(*NODE_LIST): ok(k3d_nodes()),
            **{crictl(node): ok({"images": []}) for node in NODES},
            image_inspect(REFS[0]): fail("permission denied while trying to connect"),
        }
    )
    with pytest.raises(Exit, match="cannot inspect image prism-admin:latest: .*permission denied"):
        images.load(c)
    assert changes(c) == []


# --- deploy.all brings the images in ----------------------------------------------------------


def test_deploy_all_loads_the_images_after_creating_the_cluster() -> None:
    """`inv cluster.create deploy.all`: the calls invoke makes, in order (as its parser hands
    them over: tasks named on the command line carry their flags' defaults): cluster.create
    once, not once as named and once as the pre-task."""
    assert [call.task for call in deploy.all_.pre] == [cluster.create, images.load]
    executor = Executor(tasks.ns, config=Config())
    named = [
        Call(cluster.create, kwargs={"provider": None, "tuning": False}),
        Call(deploy.all_, kwargs={"overlay": None, "timeout": None}),
    ]
    order = [call.task for call in executor.dedupe(executor.expand_calls(named))]
    assert order == [cluster.create, images.load, deploy.all_]
    # a flag given to the named one makes it a different call: then both run, as invoke does
    flagged = [Call(cluster.create, kwargs={"provider": "kwok", "tuning": False}), named[1]]
    order = [call.task for call in executor.dedupe(executor.expand_calls(flagged))]
    assert order == [cluster.create, cluster.create, images.load, deploy.all_]
