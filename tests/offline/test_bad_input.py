"""Bad input, as a user types it: one line on stderr, a non-zero exit, no traceback, and no
command run (every tool on PATH is a stub that records being called)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.cli import INV, ROOT

TOOLS = ("kubectl", "kwokctl", "helm", "docker", "k3d", "ssh")


@pytest.fixture
def stubs(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH directory whose tools only write their command line into a log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit 1\n')
        script.chmod(0o755)
    return bin_dir, log


def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "not_utf8": tmp_path / "bad.env",
        "typo_section": tmp_path / "typo.yaml",
        "yaml_syntax": tmp_path / "syntax.yaml",
        "list_section": tmp_path / "list.yaml",
    }
    made["not_utf8"].write_bytes(b"PRISM_ENV=\xff\xfe\n")
    made["typo_section"].write_text("clustr:\n  name: x\n")
    made["yaml_syntax"].write_text('cluster:\n  name: "x\n')
    made["list_section"].write_text("cluster: [1, 2]\n")
    return made


# (id, inv arguments, environment, what the one line says); "{name}" are files made above.
CASES = [
    ("timeout-not-a-number", ["ingress.install", "--timeout", "abc"], {}, "--timeout 'abc' is not a whole number"),
    ("timeout-negative", ["ingress.install", "--timeout", "-5"], {}, "--timeout '-5' must be between 1 and 86400"),
    ("timeout-huge", ["chaos.kill-pod", "--app", "x", "--timeout", "99999999999"], {}, "must be between 1 and 86400"),
    ("port-not-a-number", ["observe.grafana", "--port", "abc"], {}, "--port 'abc' is not a port number"),
    ("logs-tail-not-a-number", ["observe.logs", "x", "--tail", "abc"], {}, "--tail abc: give a number of lines"),
    ("logs-since-not-a-duration", ["observe.logs", "x", "--since", "5q"], {}, "--since '5q' is not a duration"),
    ("forward-without-service", ["observe.forward", "--services", " , "], {}, "name at least one Service"),
    ("dotenv-not-utf8", ["cluster.status"], {"PRISM_DOTENV": "{not_utf8}"}, "is not UTF-8"),
    ("config-typo-section", ["-f", "{typo_section}", "cluster.status"], {}, "unknown section 'clustr' (did you mean cluster?)"),
    ("config-yaml-syntax", ["-f", "{yaml_syntax}", "cluster.status"], {}, "while scanning a quoted scalar"),
    ("config-section-not-a-mapping", ["-f", "{list_section}", "cluster.status"], {}, "merge"),
    ("variable-typo", ["cluster.list"], {"PRISM_CLUSTR_NAME": "x"}, "unknown setting PRISM_CLUSTR_NAME (did you mean PRISM_CLUSTER_NAME?)"),
    ("api-port-out-of-range", ["cluster.create"], {"PRISM_CLUSTER_API_PORT": "70000"}, "is not a TCP port"),
    ("api-port-too-high-for-kwok", ["cluster.create"], {"PRISM_CLUSTER_API_PORT": "65000"}, "too high for the simulated cluster"),
    ("agents-absurd", ["cluster.create"], {"PRISM_CLUSTER_AGENTS": "99999999"}, "is out of range; use 0"),
    ("cluster-name-not-a-label", ["cluster.create"], {"PRISM_CLUSTER_NAME": "bad name;x"}, "is not a cluster name"),
    ("ingress-host-not-a-hostname", ["ingress.hosts"], {"PRISM_INGRESS_HOST": "a b"}, "is not a hostname"),
    ("unknown-environment", ["cluster.status"], {"PRISM_ENV": "qa"}, "unknown environment PRISM_ENV='qa'"),
    ("proxy-service-type-unknown", ["deploy.render"], {"PRISM_CLUSTER_PROXY_SERVICE_TYPE": "External"}, "='External': choose one of LoadBalancer, NodePort, ClusterIP"),
    ("images-registry-with-a-scheme", ["deploy.render"], {"PRISM_IMAGES_REGISTRY": "https://ghcr.io/acme"}, "is not a registry prefix"),
    ("two-image-registries", ["images.load"], {"PRISM_IMAGES_REGISTRY": "ghcr.io/acme", "PRISM_CLUSTER_REGISTRY": "true"}, "keep one"),
    ("render-into-a-directory", ["deploy.render", "--output", "{dir}"], {}, "is a directory; give a file name"),
    ("unreachable-host-with-connect-timeout", ["-H", "127.0.0.1:1", "-t", "5", "cluster.list"], {}, "cannot reach 127.0.0.1:1"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_runs_nothing(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path, stubs: tuple[Path, Path]
) -> None:
    bin_dir, log = stubs
    made = {**{k: str(v) for k, v in files(tmp_path).items()}, "dir": str(tmp_path)}
    before = sorted(p.name for p in tmp_path.iterdir())
    environ = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PRISM_CLUSTER_PROVIDER": "kwok",
        **{k: v.format(**made) for k, v in env.items()},
    }
    result = subprocess.run(
        [INV, *(a.format(**made) for a in args)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    called = log.read_text().splitlines() if log.exists() else []
    assert called == [], f"commands ran: {called}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`inv backends.list | head -1`: the reader goes away; no traceback, no noise."""
    reader = subprocess.Popen(
        [INV, "backends.list"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # before anything was read: every write fails
    assert reader.wait(timeout=60) != 0
    assert reader.stderr.read() == b""


def test_ctrl_c_stops_the_task_not_only_the_command(stubs: tuple[Path, Path]) -> None:
    """^C reaches the whole foreground process group, as a terminal sends it: the command
    ends, and the task stops with one line and exit 130 instead of carrying on."""
    bin_dir, log = stubs
    (bin_dir / "kwokctl").write_text(f'#!/bin/sh\necho "kwokctl $*" >> {log}\nexec sleep 30\n')
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PRISM_CLUSTER_PROVIDER": "kwok"}
    task = subprocess.Popen(
        [INV, "cluster.list"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the command is running
    os.killpg(task.pid, signal.SIGINT)
    out, err = task.communicate(timeout=20)
    assert task.returncode == 130, out + err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted (Ctrl-C); the lines above say what was done"]
