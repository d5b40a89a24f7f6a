"""Every overlay as a platform team's linter sees it: kube-score (the pinned release that
scripts/setup builds with scripts/build-go-tool.sh) scores the rendered overlays. No CRITICAL
finding anywhere; each finding an overlay accepts is ignored by an annotation that says why, and
no ignore hides a check that would pass anyway."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["local", "dev", "staging", "prod", "ci"]
PINNED = ["staging", "prod", "ci"]
CRITICAL, WARNING = 1, 5  # kube-score's grades

# What every overlay accepts, with its reason in the annotation: the images' own users below
# kube-score's uid 10000, runners with nothing to probe, prism-admin's single SQLite replica.
ACCEPTED_EVERYWHERE = {
    ("StatefulSet", "redis", "container-security-context-user-group-id"),
    ("StatefulSet", "postgres", "container-security-context-user-group-id"),
    ("StatefulSet", "keyvalue-runner", "pod-probes"),
    ("StatefulSet", "mailbox-runner", "pod-probes"),
    ("Deployment", "prism-admin", "deployment-replicas"),
}
# local and dev add the guide's local-import convention: `latest` tags, never pulled.
ACCEPTED_LOCALLY = ACCEPTED_EVERYWHERE | {
    *((kind, name, check)
      for kind, name in [("Deployment", "prism-admin"), ("Deployment", "prism-proxy"),
                         ("StatefulSet", "keyvalue-runner"), ("Deployment", "consumer-runner"),
                         ("Deployment", "producer-runner"), ("StatefulSet", "mailbox-runner")]
      for check in ("container-image-tag", "container-image-pull-policy")),
    ("StatefulSet", "minio", "container-image-tag"),  # latest: Kubernetes pulls it Always
    *(("StatefulSet", name, "container-image-pull-policy") for name in ("redis", "nats", "postgres")),
}  # fmt: skip
ACCEPTED = {name: ACCEPTED_LOCALLY if name in ("local", "dev") else ACCEPTED_EVERYWHERE
            for name in OVERLAYS}  # fmt: skip


@functools.cache
def kube_score() -> str:
    """The pinned binary; tests never download it."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "build-go-tool.sh"), "--path", "kube-score"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(
            f"kube-score is not built ({found.stdout.strip()}): run "
            "`scripts/build-go-tool.sh kube-score` (scripts/setup does)"
        )
    return found.stdout.strip()


@pytest.fixture(autouse=True)
def tools_on_path() -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with built-in kustomize) is not on PATH; install kubectl 1.29+")
    kube_score()


@functools.cache
def rendered(name: str) -> str:
    return subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / name)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@functools.cache
def scored(name: str, *flags: str) -> tuple[int, tuple[dict[str, Any], ...]]:
    """(kube-score's exit code, its JSON report) for an overlay."""
    result = subprocess.run(
        [kube_score(), "score", "--output-format", "json", *flags, "-"],
        input=rendered(name),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, tuple(json.loads(result.stdout))


def findings(name: str, *flags: str, grades: tuple[int, ...] = (CRITICAL,)) -> set[tuple[str, ...]]:
    """(kind, name, check) of every check graded `grades` and not skipped."""
    _, report = scored(name, *flags)
    return {
        (obj["type_meta"]["kind"], obj["object_meta"]["name"], check["check"]["id"])
        for obj in report
        for check in obj["checks"]
        if check["grade"] in grades and not check["skipped"]
    }


def ignores(name: str) -> dict[tuple[str, str], tuple[set[str], str]]:
    """(kind, name) -> (the checks its kube-score/ignore annotations name, their reasons), from
    the workload's own annotations and its pod template's (kube-score reads both)."""
    import yaml

    found = {}
    for obj in yaml.safe_load_all(rendered(name)):
        levels = [obj["metadata"]]
        if "template" in obj.get("spec", {}):
            levels.append(obj["spec"]["template"].get("metadata", {}))
        checks, reasons = set(), []
        for meta in levels:
            annotations = meta.get("annotations") or {}
            if "kube-score/ignore" in annotations:
                checks |= {c.strip() for c in annotations["kube-score/ignore"].split(",")}
                reasons.append(annotations.get("kube-score/ignore-reason", ""))
        if checks:
            found[(obj["kind"], obj["metadata"]["name"])] = (checks, " ".join(reasons))
    return found


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_critical_finding(name: str) -> None:
    code, _ = scored(name)
    assert findings(name) == set()
    assert code == 0  # kube-score's own verdict: it exits 1 on a critical finding


@pytest.mark.parametrize("name", PINNED)
def test_the_shared_cluster_overlays_accept_nothing_about_their_images(name: str) -> None:
    accepted = {(kind, obj, check) for (kind, obj), (checks, _) in ignores(name).items()
                for check in checks}  # fmt: skip
    assert accepted == ACCEPTED_EVERYWHERE


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ignore_says_why_for_each_check(name: str) -> None:
    for (kind, obj), (checks, reason) in ignores(name).items():
        for check in checks:
            assert f"{check}:" in reason, f"{kind} {obj}: no reason given for {check}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_ignore_hides_a_real_finding_and_nothing_else_is_found(name: str) -> None:
    """Without the annotations, kube-score finds exactly what they ignore: no ignore is stale,
    and no finding is hidden any other way."""
    unignored = findings(name, "--disable-ignore-checks-annotations", grades=(CRITICAL, WARNING))
    assert unignored == ACCEPTED[name] | findings(name, grades=(WARNING,))


def test_ci_accepts_one_warning_its_single_proxy() -> None:
    """The small profile's one proxy, which ci runs without an HPA so that tests can count on it."""
    assert findings("ci", grades=(WARNING,)) == {
        ("Deployment", "prism-proxy", "deployment-replicas")
    }
    for name in ("local", "dev", "staging", "prod"):
        assert findings(name, grades=(WARNING,)) == set(), name
