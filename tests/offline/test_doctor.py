"""`inv doctor` against tools of known versions: scripts that answer like the real ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from support.cli import ROOT, inv

from tasks._core import sim_binaries as _sim

BIN = Path(sys.executable).parent

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


def doctor(tmp_path: Path, provider: str, bin_dir: Path, *flags: str) -> tuple[int, str, str]:
    env = {"PATH": str(bin_dir), "PRISM_SIM_HOME": str(tmp_path / "no-sim")}
    result = inv("doctor", "--provider", provider, *flags, env=env)
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


K3D_TOOLS = {
    "kubectl": KUBECTL_JSON,
    "helm": "v3.14.2+gc309b6f",
    "k3d": "k3d version v5.6.3",
    "docker": "Docker version 24.0.7, build afdd53b",
}


def test_json_document_has_the_documented_keys(tmp_path: Path) -> None:
    bin_dir = toolbox(tmp_path, kubectl=KUBECTL_JSON, helm="v3.12.0+g1234", docker="Docker 24.0.7")
    code, out, err = doctor(tmp_path, "k3d", bin_dir, "--json")
    assert code == 1, err  # helm too old, k3d missing: the document still comes, then exit 1
    document = json.loads(out)
    assert list(document) == [
        "provider",
        "reason",
        "tools",
        "simulated_cluster_binaries",
        "docker_daemon",
        "entry_points",
        "inv_on_path",
        "problems",
        "ok",
    ]
    tools = {tool["name"]: tool for tool in document["tools"]}
    assert list(tools) == ["kubectl", "helm", "k3d", "docker", "kwokctl"]
    assert tools["helm"] == {
        "name": "helm",
        "state": "old",
        "version": "3.12.0",
        "minimum": "3.14",
        "required": True,
        "detail": tools["helm"]["detail"],
    }
    assert tools["k3d"]["state"] == "missing" and tools["k3d"]["version"] == ""
    assert tools["kwokctl"]["required"] is False
    assert document["provider"] == "k3d" and document["simulated_cluster_binaries"] is None
    assert {e["name"]: e["state"] for e in document["entry_points"]} == {
        "inv": "ours",
        "invoke": "ours",
        "prism": "ours",
    }
    assert document["problems"] == ["helm", "k3d"]
    assert document["ok"] is False
    assert "doctor: missing or too old: helm, k3d" in err


def test_json_for_kwok_names_the_binaries_directory_and_the_entry_points_paths(
    tmp_path: Path,
) -> None:
    bin_dir = toolbox(tmp_path, kubectl=KUBECTL_JSON, helm="v3.17.4")
    code, out, _ = doctor(tmp_path, "kwok", bin_dir, "--json")
    assert code == 1  # no simulated-cluster binaries under PRISM_SIM_HOME
    document = json.loads(out)
    binaries = document["simulated_cluster_binaries"]
    assert list(binaries) == ["dir", "missing"]
    assert Path(binaries["dir"]).parent == tmp_path / "no-sim"
    assert binaries["missing"] == list(_sim.BINARIES)
    assert "simulated-cluster binaries" in document["problems"]
    assert document["docker_daemon"] is False and document["inv_on_path"] is None
    assert [list(entry) for entry in document["entry_points"]] == [["name", "path", "state"]] * 3
    assert {e["name"]: e["path"] for e in document["entry_points"]} == {
        name: str(BIN / name) for name in ("inv", "invoke", "prism")
    }


def test_a_foreign_inv_on_path_is_a_note_not_a_failure(tmp_path: Path) -> None:
    bin_dir = toolbox(tmp_path, **K3D_TOOLS)
    (bin_dir / "inv").write_text(invoke_script(Path("/usr/bin/python3")))
    (bin_dir / "inv").chmod(0o755)
    code, out, err = doctor(tmp_path, "k3d", bin_dir)
    assert code == 0, out + err
    assert f"note: the `inv` on PATH is {bin_dir / 'inv'}, another program (no -H)" in out
    code, out, _ = doctor(tmp_path, "k3d", bin_dir, "--json")
    assert json.loads(out)["inv_on_path"] == {"path": str(bin_dir / "inv"), "ours": False}


# --- a virtualenv whose `inv` was overwritten by reinstalling invoke ---------------------


def invoke_script(python: Path) -> str:
    """The console script pip writes for invoke's own `inv` (from invoke's entry points)."""
    entry = next(e for e in metadata.distribution("invoke").entry_points if e.name == "inv")
    module, _, attr = entry.value.partition(":")
    return (
        f"#!{python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
        f"if __name__ == '__main__':\n    sys.exit({attr}())\n"
    )


def clobbered_venv(tmp_path: Path) -> Path:
    """A virtualenv sharing this one's packages, whose inv and invoke are invoke's own scripts
    (what `pip install --force-reinstall invoke` leaves) and whose prism is still ours."""
    venv = tmp_path / "venv"
    purelib = Path(sysconfig.get_paths()["purelib"])
    site_packages = venv / purelib.relative_to(sys.prefix)
    site_packages.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    # addsitedir also runs the shared site-packages' .pth files (the editable install's).
    (site_packages / "shared.pth").write_text(f"import site; site.addsitedir({str(purelib)!r})\n")
    bin_dir = venv / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.symlink_to(Path(sys.executable).resolve())
    for name in ("inv", "invoke"):
        (bin_dir / name).write_text(invoke_script(python))
    (bin_dir / "prism").write_text(
        (BIN / "prism").read_text().replace(str(BIN / "python"), str(python), 1)
    )
    for name in ("inv", "invoke", "prism"):
        (bin_dir / name).chmod(0o755)
    return venv


def run(program: Path, *args: str, tools: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": str(tools),
        "PRISM_SIM_HOME": str(tmp_path / "no-sim"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(program), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_doctor_finds_inv_replaced_by_invokes_own(tmp_path: Path) -> None:
    venv = clobbered_venv(tmp_path)
    tools = toolbox(tmp_path, **K3D_TOOLS)
    # The symptom: the reinstalled `inv` is plain invoke, which does not know -H.
    symptom = run(venv / "bin" / "inv", "-H", "box", "doctor", tools=tools, tmp_path=tmp_path)
    assert symptom.returncode == 1 and "No idea what '-H' is!" in symptom.stderr
    result = run(venv / "bin" / "prism", "doctor", "-p", "k3d", tools=tools, tmp_path=tmp_path)
    assert result.returncode == 1
    inv, invoke = venv / "bin" / "inv", venv / "bin" / "invoke"
    assert (
        f"  not this project's program, -H is gone: {inv} (replaced), {invoke} (replaced)\n"
        "    fix: `inv doctor --fix` puts ours back (so does scripts/setup; "
        "meanwhile .venv/bin/prism is the same program)\n"
    ) in result.stdout
    assert "doctor: `inv` is not this project's program (`inv doctor --fix`)" in result.stderr
    document = json.loads(
        run(
            venv / "bin" / "prism", "doctor", "-p", "k3d", "--json", tools=tools, tmp_path=tmp_path
        ).stdout
    )
    assert [(e["name"], e["state"]) for e in document["entry_points"]] == [
        ("inv", "replaced"),
        ("invoke", "replaced"),
        ("prism", "ours"),
    ]
    assert document["problems"] == ["entry points"] and document["ok"] is False


def test_doctor_fix_puts_our_inv_back(tmp_path: Path) -> None:
    venv = clobbered_venv(tmp_path)
    tools = toolbox(tmp_path, **K3D_TOOLS)
    result = run(
        venv / "bin" / "prism", "doctor", "-p", "k3d", "--fix", tools=tools, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  fixed: inv, invoke\n" in result.stdout
    assert f"  entry points ours: inv, invoke, prism in {venv / 'bin'}" in result.stdout
    for name in ("inv", "invoke"):
        assert (venv / "bin" / name).stat().st_mode & 0o777 == 0o755
    # The written scripts are working programs: ours, with -H.
    help_text = run(venv / "bin" / "inv", "--help", tools=tools, tmp_path=tmp_path)
    assert "-H STRING, --hosts=STRING" in help_text.stdout
    again = run(
        venv / "bin" / "invoke", "doctor", "-p", "k3d", "--fix", tools=tools, tmp_path=tmp_path
    )
    assert again.returncode == 0 and "  nothing to fix\n" in again.stdout
    assert sorted(p.name for p in (venv / "bin").iterdir()) == ["inv", "invoke", "prism", "python"]
