"""`inv doctor` against tools of known versions: scripts that answer like the real ones."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import inv

KUBECTL_JSON = json.dumps({"clientVersion": {"gitVersion": "v1.32.4"}})


def toolbox(tmp_path: Path, **answers: str) -> Path:
    """A PATH directory whose tools print the given version text (no entry: tool missing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "env", "cat"):
        (bin_dir / name).symlink_to(f"/bin/{name}")
    for tool, text in answers.items():
        script = bin_dir / tool.replace("_", "-")
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n")
        script.chmod(0o755)
    return bin_dir


def doctor(tmp_path: Path, provider: str, bin_dir: Path) -> tuple[int, str, str]:
    env = {"PATH": str(bin_dir), "PRISM_SIM_HOME": str(tmp_path / "no-sim")}
    result = inv("doctor", "--provider", provider, env=env)
    return result.returncode, result.stdout, result.stderr


def test_all_required_tools_present_and_new_enough(tmp_path: Path) -> None:
    bin_dir = toolbox(
        tmp_path,
        kubectl=KUBECTL_JSON,
        helm="v3.14.2+gc309b6f",
        k3d="k3d version v5.6.3\nk3s version v1.28.8-k3s1 (default)",
        docker="Docker version 24.0.7, build afdd53b",
    )
    code, out, err = doctor(tmp_path, "k3d", bin_dir)
    assert code == 0, out + err
    assert "kubectl   ok       1.32.4  [required]" in out
    assert "k3d       ok       5.6.3  [required]" in out
    assert "doctor: all required tools present" in out


def test_old_tool_fails_with_its_minimum(tmp_path: Path) -> None:
    bin_dir = toolbox(
        tmp_path,
        kubectl=KUBECTL_JSON,
        helm="v3.12.0+g1234",
        k3d="k3d version v5.6.3",
        docker="Docker version 24.0.7",
    )
    code, out, err = doctor(tmp_path, "k3d", bin_dir)
    assert code == 1
    assert "helm      old      3.12.0 (need 3.14+" in out
    assert "doctor: missing or too old: helm" in err


def test_missing_required_tool_says_how_to_get_it(tmp_path: Path) -> None:
    bin_dir = toolbox(
        tmp_path, kubectl=KUBECTL_JSON, helm="v3.14.2", docker="Docker version 24.0.7"
    )
    code, out, err = doctor(tmp_path, "k3d", bin_dir)
    assert code == 1
    assert "k3d       missing  install k3d 5.6+: https://k3d.io/#installation  [required]" in out
    assert "Traceback" not in err


def test_kwok_provider_needs_the_simulated_cluster_binaries(tmp_path: Path) -> None:
    bin_dir = toolbox(tmp_path, kubectl=KUBECTL_JSON, helm="v3.17.4")
    code, out, _ = doctor(tmp_path, "kwok", bin_dir)
    assert code == 1
    assert "kwokctl   missing  run scripts/build-sim-binaries.sh" in out
    assert "simulated-cluster binaries missing in" in out
    assert "k3d       missing" in out and "[optional]" in out
