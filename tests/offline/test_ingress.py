"""ingress.install (pinned ingress-nginx chart, no webhooks in the simulated cluster) and
ingress.hosts (one prism.local line, added once, and a sudo hint when it cannot write)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from invoke import Exit
from support.cli import inv
from support.fakes import (
    DOCKER_INFO,
    changes,
    cmd,
    commands,
    k3d_cluster,
    ok,
    shell,
    tools,  # noqa: F401  (fixture)
)

from tasks import ingress

HELM_INSTALL = [
    "upgrade",
    "--install",
    "ingress-nginx",
    "ingress-nginx",
    "--repo",
    "https://kubernetes.github.io/ingress-nginx",
    "--version",
    "4.10.0",
    "--create-namespace",
    "--wait",
    "--timeout",
    "300s",
]


@pytest.mark.usefixtures("tools")
def test_install_on_k3d_uses_the_pinned_chart_and_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")  # named explicitly: may be acted on
    helm = [
        "helm",
        "--kube-context",
        "k3d-prism-local",
        "--namespace",
        "ingress-nginx",
        *HELM_INSTALL,
    ]
    c = shell(
        {
            cmd(*DOCKER_INFO): ok("24.0.7"),
            cmd("k3d", "cluster", "list", "-o", "json"): ok([k3d_cluster()]),
            cmd(*helm): ok(),
        }
    )
    ingress.install(c)
    assert changes(c) == [helm]


@pytest.mark.usefixtures("tools")
def test_install_on_kwok_disables_the_admission_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")
    monkeypatch.setenv("PRISM_CLUSTER_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PRISM_INGRESS_CHART_REPO", "http://127.0.0.1:8879/charts")
    helm = [
        "helm",
        "--kube-context",
        "kwok-prism-local",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        "ingress-nginx",
        *HELM_INSTALL[:5],
        "http://127.0.0.1:8879/charts",
        *HELM_INSTALL[6:-1],
        "60s",
        "--set",
        "controller.admissionWebhooks.enabled=false",
        "--set",
        "controller.service.type=NodePort",
    ]
    c = shell({cmd("kwokctl", "get", "clusters"): ok("prism-local\n"), cmd(*helm): ok()})
    ingress.install(c, timeout=60)
    assert changes(c) == [helm]


@pytest.mark.usefixtures("tools")
def test_install_without_a_cluster_says_create_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    c = shell({cmd("kwokctl", "get", "clusters"): ok("")})
    with pytest.raises(
        Exit, match=r"cluster prism-local does not exist \(kwok\); run `inv cluster.create`"
    ):
        ingress.install(c)
    assert commands(c) == [["kwokctl", "get", "clusters"]]


# --- hosts ----------------------------------------------------------------------------------

ORIGINAL = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# 127.0.0.1 prism.local (a comment)\n"
)


@pytest.fixture
def hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hosts"
    path.write_text(ORIGINAL)
    path.chmod(0o644)
    monkeypatch.setenv("PRISM_INGRESS_HOSTS_FILE", str(path))
    return path


def test_hosts_adds_the_entry_once(hosts_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = hosts_file.stat().st_ino
    ingress.hosts(shell({}))
    assert hosts_file.read_text() == ORIGINAL + "127.0.0.1 prism.local\n"
    assert hosts_file.stat().st_ino != before  # replaced by rename, never half-written
    assert stat.S_IMODE(hosts_file.stat().st_mode) == 0o644
    assert [p.name for p in hosts_file.parent.iterdir() if p.name.startswith(".hosts")] == []
    assert f"added '127.0.0.1 prism.local' to {hosts_file}" in capsys.readouterr().out

    written = hosts_file.stat().st_mtime_ns
    ingress.hosts(shell({}))
    assert hosts_file.read_text() == ORIGINAL + "127.0.0.1 prism.local\n"
    assert hosts_file.stat().st_mtime_ns == written
    assert f"{hosts_file}:4 already maps prism.local to 127.0.0.1; nothing to do" in (
        capsys.readouterr().out
    )


def test_hosts_recognizes_an_entry_among_aliases(hosts_file: Path) -> None:
    hosts_file.write_text("127.0.0.1  localhost prism.local  # added by hand\n")
    ingress.hosts(shell({}))
    assert hosts_file.read_text() == "127.0.0.1  localhost prism.local  # added by hand\n"


def test_hosts_completes_a_last_line_without_newline(hosts_file: Path) -> None:
    hosts_file.write_text("127.0.0.1 localhost")
    ingress.hosts(shell({}))
    assert hosts_file.read_text() == "127.0.0.1 localhost\n127.0.0.1 prism.local\n"


def test_hosts_never_overrides_another_mapping(hosts_file: Path) -> None:
    hosts_file.write_text("10.0.0.7 prism.local\n")
    with pytest.raises(Exit) as caught:
        ingress.hosts(shell({}))
    assert str(caught.value.message) == (
        f"{hosts_file}:1 maps prism.local to 10.0.0.7, not 127.0.0.1; edit that line by hand"
    )
    assert hosts_file.read_text() == "10.0.0.7 prism.local\n"


def test_hosts_not_writable_gives_the_sudo_command(
    hosts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts_file.chmod(0o444)
    if os.geteuid() == 0:  # root may write anything: answer as an ordinary user would see it
        monkeypatch.setattr(ingress.os, "access", lambda path, mode: False)
    with pytest.raises(Exit) as caught:
        ingress.hosts(shell({}))
    assert str(caught.value.message) == (
        f"cannot write {hosts_file} as this user (it needs sudo); run: "
        f"echo '127.0.0.1 prism.local' | sudo tee -a {hosts_file} >/dev/null"
    )
    assert hosts_file.read_text() == ORIGINAL


def test_hosts_dry_run_changes_nothing(
    hosts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingress.hosts(shell({}, run={"dry": True}))
    assert hosts_file.read_text() == ORIGINAL
    assert f"would add '127.0.0.1 prism.local' to {hosts_file}" in capsys.readouterr().out


def test_hosts_flag_wins_over_config(hosts_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-hosts"
    other.write_text("")
    ingress.hosts(shell({}), hosts_file=str(other))
    assert other.read_text() == "127.0.0.1 prism.local\n"
    assert hosts_file.read_text() == ORIGINAL


def test_hosts_from_the_command_line(hosts_file: Path) -> None:
    first = inv("ingress.hosts")
    second = inv("ingress.hosts")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "already maps prism.local" in second.stdout
    assert hosts_file.read_text().count("prism.local") == 2  # the comment and one entry
