"""The context provider where it fails before any cluster is needed: `cluster.create` on a
context that is not there, not named, or not answering, and the allow-list read from
invoke.yaml. The real `inv` and kubectl run against a kubeconfig written here, whose server
is a closed port on 127.0.0.1; nothing listens, nothing is changed."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from support.cli import inv

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: theirs
  cluster: {{server: "https://127.0.0.1:{port}"}}
contexts:
- name: staging
  context: {{cluster: theirs, user: someone}}
users:
- name: someone
  user: {{token: not-a-secret}}
"""


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: their API server is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def kubeconfig(tmp_path: Path, closed_port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(port=closed_port))
    return path


def as_context(kubeconfig: Path, context: str = "staging", **extra: str) -> dict[str, str]:
    return {
        "PRISM_CLUSTER_PROVIDER": "context",
        "PRISM_CLUSTER_CONTEXT": context,
        "PRISM_CLUSTER_KUBECONFIG": str(kubeconfig),
        "NO_COLOR": "1",
        **extra,
    }


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's one line on standard error (non-zero exit, no traceback)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- cluster.create: it only checks; each way that fails is one line --------------------------


def test_create_on_a_context_that_does_not_answer_is_one_line(
    kubeconfig: Path, closed_port: int
) -> None:
    line = one_error_line(inv("cluster.create", env=as_context(kubeconfig)))
    assert line == (
        f"context staging does not answer: The connection to the server 127.0.0.1:{closed_port} "
        "was refused - did you specify the right host or port?; check the cluster and your "
        f"credentials (`kubectl --kubeconfig {kubeconfig} --context staging get --raw /readyz`)"
    )


def test_create_on_a_context_the_kubeconfig_lacks_is_one_line(kubeconfig: Path) -> None:
    line = one_error_line(inv("cluster.create", env=as_context(kubeconfig, "stagin")))
    assert line == (
        "no context stagin in the kubeconfig; the context provider uses an existing cluster: "
        "set PRISM_CLUSTER_CONTEXT to one of `kubectl config get-contexts -o name`"
    )


def test_create_without_a_context_is_one_line_before_any_command(kubeconfig: Path) -> None:
    result = inv("cluster.create", env=as_context(kubeconfig, ""))
    assert one_error_line(result) == (
        "PRISM_CLUSTER_PROVIDER=context needs PRISM_CLUSTER_CONTEXT: the kubeconfig context "
        "of the cluster to use (`kubectl config get-contexts -o name` lists them)"
    )
    assert result.stdout == ""  # not even the provider line: nothing was resolved


# --- the allow-list as invoke.yaml gives it (Tilt's allow_k8s_contexts form) -----------------


def test_a_yaml_list_of_allowed_contexts_is_read_and_the_fix_adds_to_it(
    kubeconfig: Path, tmp_path: Path
) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text("cluster:\n  allowed_contexts:\n    - dev\n    - qa\n")
    result = inv("-f", str(config), "ingress.install", env=as_context(kubeconfig))
    assert one_error_line(result) == (
        "context staging is not in cluster.allowed_contexts (now: dev, qa): prism-tasks changes "
        "a cluster it did not create only when allowed; add staging to "
        "PRISM_CLUSTER_ALLOWED_CONTEXTS (comma-separated) or to the cluster.allowed_contexts "
        "list in invoke.yaml"
    )


def test_a_yaml_list_that_allows_the_context_lets_the_task_go_on(
    kubeconfig: Path, tmp_path: Path, closed_port: int
) -> None:
    """Past the guard, ingress.install reaches helm; a stand-in helm says what it was asked."""
    config = tmp_path / "invoke.yaml"
    config.write_text("cluster:\n  allowed_contexts: [dev, staging]\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text('#!/bin/sh\necho "helm $*" >&2\nexit 7\n')
    (bin_dir / "helm").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = inv("-f", str(config), "ingress.install", env=as_context(kubeconfig, PATH=path))
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert f"helm --kube-context staging --kubeconfig {kubeconfig} " in result.stderr
    assert "allowed_contexts" not in result.stderr


def test_an_allowed_context_that_is_not_a_string_is_one_line(
    kubeconfig: Path, tmp_path: Path
) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text("cluster:\n  allowed_contexts: [staging, 2024]\n")
    result = inv("-f", str(config), "cluster.status", env=as_context(kubeconfig))
    assert one_error_line(result) == (
        "config cluster.allowed_contexts[1] is 2024 (int); expected a non-empty str "
        "(quote it in YAML)"
    )
