"""observe.install the way a Helm user installs charts, without a cluster: values files beside
the manifests, `--repo` instead of the user's repositories, a failed fetch as one line naming
the repository and the mirror setting, the values file on standard input over -H.
(Against a real helm and a loopback chart repository: tests/cluster/test_observe.py.)"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, cast
from unittest.mock import Mock

import pytest
import yaml
from invoke import Exit, MockContext
from support.cli import inv
from support.fakes import changes, cmd, commands, fail, ok, shell, tools  # noqa: F401  (fixture)

from tasks import observe

from .test_observe import (
    GRAFANA_REPO,
    LOKI_UPGRADE,
    LOKI_VALUES,
    PROMETHEUS_FETCH,
    PROMETHEUS_REPO,
    PROMETHEUS_VALUES,
    READYZ,
    helm_argv,
    k3d_install_shell,
    prometheus_upgrade,
)

CONTEXT = "k3d-prism-local"


@pytest.fixture
def k3d(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811  (the fixture)
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")  # named explicitly: may be acted on
    monkeypatch.setenv("NO_COLOR", "1")


def test_values_files_hold_the_guides_values() -> None:
    """The guide's `--set` flags, as YAML beside the manifests."""
    assert yaml.safe_load(Path(PROMETHEUS_VALUES).read_text()) == {
        "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}}
    }
    assert yaml.safe_load(Path(LOKI_VALUES).read_text()) == {
        "grafana": {"enabled": False},
        "promtail": {"enabled": True},
    }


@pytest.mark.usefixtures("k3d")
def test_install_runs_no_helm_repo_command() -> None:
    c = k3d_install_shell()
    observe.install(c)
    assert [argv for argv in commands(c) if argv[:2] == ["helm", "repo"]] == []
    assert [argv for argv in commands(c) if "repo" in argv] == []


@pytest.mark.usefixtures("k3d")
def test_a_chart_that_cannot_be_fetched_is_one_line_naming_the_repository_and_the_mirror(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = k3d_install_shell()
    upgrade = cmd(*helm_argv(CONTEXT, *prometheus_upgrade()))
    unreachable = (
        f'Error: looks like "{PROMETHEUS_REPO}" is not a valid chart repository or cannot be '
        "reached: dial tcp: lookup prometheus-community.github.io: no such host"
    )
    c.set_result_for("run", upgrade, fail(unreachable))
    c.set_result_for("run", cmd(*PROMETHEUS_FETCH), fail(unreachable))
    with pytest.raises(Exit) as caught:
        observe.install(c)
    assert caught.value.code == 1
    assert str(caught.value.message) == (
        f"cannot fetch chart kube-prometheus-stack 67.8.0 from {PROMETHEUS_REPO} "
        f"({unreachable}); to use a mirror of that repository, set "
        "PRISM_OBSERVE_PROMETHEUS_REPO to its URL (in .env or the environment) and run "
        "`inv observe.install` again"
    )
    assert helm_argv(CONTEXT, *LOKI_UPGRADE) not in commands(c)  # it stops there
    # helm's own output was hidden: the one line above is all the user reads about it
    assert capsys.readouterr().out == (
        f"prometheus: installing kube-prometheus-stack 67.8.0 from {PROMETHEUS_REPO} ...\n"
    )


@pytest.mark.usefixtures("k3d")
def test_a_missing_loki_chart_names_the_grafana_repository_setting() -> None:
    c = k3d_install_shell()
    loki = cmd(*helm_argv(CONTEXT, *LOKI_UPGRADE))
    missing = f'Error: chart "loki-stack" version "2.10.2" not found in {GRAFANA_REPO} repository'
    c.set_result_for("run", loki, fail(missing))
    fetch = ["helm", "show", "chart", "loki-stack", "--repo", GRAFANA_REPO, "--version", "2.10.2"]
    c.set_result_for("run", cmd(*fetch), fail(missing))
    with pytest.raises(Exit, match=r"set PRISM_OBSERVE_GRAFANA_REPO to its URL") as caught:
        observe.install(c)
    assert str(caught.value.message).startswith(
        f"cannot fetch chart loki-stack 2.10.2 from {GRAFANA_REPO} ("
    )


@pytest.mark.usefixtures("tools")
def test_on_kwok_a_release_with_the_file_values_and_the_webhook_switches_is_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What helm reports after `-f file --set ...` is the file's values with the --set ones merged
    in; that is what the install compares with."""
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")
    monkeypatch.setenv("NO_COLOR", "1")
    context = "kwok-prism-local"
    reported = {
        "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}},
        "prometheusOperator": {
            "admissionWebhooks": {
                "enabled": False,
                "patch": {"enabled": False},
                "deployment": {"enabled": False},
            },
            "tls": {"enabled": False},
        },
    }
    release = {"name": "prometheus", "revision": "1", "status": "deployed"}
    c = shell(
        {
            cmd("kubectl", "--context", context, "get", "--raw", "/readyz"): ok("ok"),
            cmd(*helm_argv(context, "list", "--all", "-o", "json")): ok(
                [{**release, "chart": "kube-prometheus-stack-67.8.0"}]
            ),
            cmd(*helm_argv(context, "get", "values", "prometheus", "-o", "json")): ok(reported),
            cmd(*helm_argv(context, *LOKI_UPGRADE)): ok(),
        }
    )
    observe.install(c)
    assert changes(c) == [helm_argv(context, *LOKI_UPGRADE)]
    assert (
        "prometheus: kube-prometheus-stack-67.8.0 already deployed with these values "
        "(revision 1); nothing to do" in capsys.readouterr().out.splitlines()
    )


class RemoteShell(MockContext):
    """A MockContext that looks like a fabric Connection (`-H box`)."""

    host = "box"
    user = "me"
    port = 22

    def open(self) -> None:
        pass


@pytest.mark.usefixtures("k3d")
def test_over_ssh_the_values_file_goes_on_helms_standard_input() -> None:
    """The host has no copy of this checkout: `-f -` with the file's text instead of a path."""
    from invoke import Config

    import tasks

    config = Config()
    config.load_collection(tasks.ns.configuration())
    upgrades = [
        ["-" if arg.endswith("-values.yaml") else arg for arg in argv]
        for argv in (helm_argv(CONTEXT, *prometheus_upgrade()), helm_argv(CONTEXT, *LOKI_UPGRADE))
    ]
    c = RemoteShell(
        config=config,
        run={
            'echo "$HOME"': ok("/home/box\n"),  # settings ask the host once for its home
            READYZ: ok("ok"),
            cmd(*helm_argv(CONTEXT, "list", "--all", "-o", "json")): ok([]),
            **{cmd(*argv): ok() for argv in upgrades},
        },
    )
    observe.install(c)
    assert changes(c) == upgrades
    sent = {
        shlex.split(call.args[0])[7]: call.kwargs.get("in_stream")
        for call in cast(Mock, c.run).call_args_list
        if "upgrade" in call.args[0]
    }
    assert sorted(sent) == ["loki", "prometheus"]
    assert cast(Any, sent["prometheus"]).getvalue() == Path(PROMETHEUS_VALUES).read_text()
    assert cast(Any, sent["loki"]).getvalue() == Path(LOKI_VALUES).read_text()


def test_dry_install_prints_the_helm_commands_a_helm_user_would_type(tools: Path) -> None:  # noqa: F811
    """Under --dry nothing is fetched or installed; the printed commands can be pasted."""
    result = inv(
        "--dry",
        "observe.install",
        env={"PRISM_CLUSTER_PROVIDER": "k3d", "NO_COLOR": "1", "PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # invoke echoes commands in bold whatever NO_COLOR says; the words are what matter here
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    printed = [shlex.split(line) for line in plain.splitlines() if line.startswith("helm")]
    upgrades = [argv for argv in printed if "upgrade" in argv]
    assert upgrades == [
        helm_argv(CONTEXT, *prometheus_upgrade()),
        helm_argv(CONTEXT, *LOKI_UPGRADE),
    ]
    assert "dry run: the commands above were printed, nothing was installed" in result.stdout
