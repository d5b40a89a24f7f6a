"""The guide's CI workflow, corrected (.github/workflows/k8s-test.yml): actionlint finds nothing
in it, and it keeps the promises docs/ci.md makes — pinned actions, no script piped into a shell,
a checksummed k3d, the guide's deploy / verify / backup / restore path, a cluster always deleted.

actionlint is the binary scripts/build-go-tool.sh built at the pin in scripts/tool-versions.env
(scripts/setup builds it, outside the test namespace); these tests download nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "k8s-test.yml"
BUILD_TOOL = ROOT / "scripts" / "build-go-tool.sh"
SHA256 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """The pinned actionlint where build-go-tool.sh put it (`--path` builds nothing)."""
    found = subprocess.run(
        ["bash", str(BUILD_TOOL), "--path", "actionlint"], capture_output=True, text=True
    )
    if found.returncode != 0:
        pytest.fail(
            f"actionlint is not built ({found.stdout.strip() or found.stderr.strip()}): "
            "run `scripts/build-go-tool.sh actionlint` (scripts/setup does when Go is available)"
        )
    return Path(found.stdout.strip())


def lint(actionlint: Path, workflow: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck and pyflakes, when on PATH, would make the result depend on the machine:
    # actionlint's own checks only (docs/ci.md says how the run: scripts were shellchecked)
    return subprocess.run(
        [str(actionlint), "-no-color", "-shellcheck=", "-pyflakes=", str(workflow)],
        capture_output=True,
        text=True,
        cwd=workflow.parent,
        timeout=60,
    )


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job]["steps"])


def scripts(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def position(job_steps: list[dict[str, Any]], pattern: str) -> int:
    """Index of the one step whose run: script matches `pattern`."""
    found = [i for i, step in enumerate(job_steps) if re.search(pattern, step.get("run", ""), re.M)]
    assert len(found) == 1, f"want exactly one step running /{pattern}/, found {len(found)}"
    return found[0]


def test_actionlint_finds_nothing_in_the_workflow(actionlint: Path) -> None:
    result = lint(actionlint, WORKFLOW)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_rejects_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    """The check above is not vacuous: the same binary and flags fail a workflow with an error."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  test:\n"
        "    needs: build\n"  # no job named build
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo hello\n"
    )
    result = lint(actionlint, broken)
    assert result.returncode == 1, result
    assert '"build"' in result.stdout and "[job-needs]" in result.stdout, result.stdout


def test_both_jobs_exist(workflow: dict[str, Any]) -> None:
    assert set(workflow["jobs"]) == {"sim", "k3d"}
    for job in workflow["jobs"].values():
        assert job["runs-on"].startswith("ubuntu-")


def test_the_sim_job_runs_what_ci_runs(workflow: dict[str, Any]) -> None:
    sim = steps(workflow, "sim")
    position(sim, r"\bbash \.ci/run$")
    keys = [s["with"]["key"] for s in sim if s.get("uses", "").startswith("actions/cache@")]
    assert any("hashFiles('scripts/sim-versions.env')" in key for key in keys), keys


def test_every_action_is_pinned_to_a_commit_with_its_version(workflow: dict[str, Any]) -> None:
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert len(uses) >= 8  # checkout, setup-go, setup-python, cache in each job
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref
    # the tag the SHA was taken from, for the reader and for update tools
    for line in WORKFLOW.read_text().splitlines():
        if re.match(r"\s*(- )?uses:", line):
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_nothing_is_piped_into_a_shell(workflow: dict[str, Any]) -> None:
    piped = re.compile(r"\|\s*(sudo\s+)?(\S*/)?(ba|da|z|k)?sh\b|\b(ba)?sh\s+<\(")
    for script in scripts(workflow):
        assert not piped.search(script), script


def test_every_download_is_checked_against_a_pinned_sha256(workflow: dict[str, Any]) -> None:
    downloads = [s for s in scripts(workflow) if re.search(r"\b(curl|wget)\b", s)]
    assert downloads
    for script in downloads:
        assert "sha256sum -c" in script, script
        checked = script.index("sha256sum -c")
        assert script.index("install ") > checked, "installed before its checksum was checked"


def test_the_k3d_job_installs_a_pinned_k3d_by_checksum(workflow: dict[str, Any]) -> None:
    env = workflow["jobs"]["k3d"]["env"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", env["K3D_VERSION"])
    assert SHA256.fullmatch(env["K3D_SHA256_LINUX_AMD64"])
    k3d = steps(workflow, "k3d")
    install = k3d[position(k3d, r"releases/download/\$\{K3D_VERSION\}/k3d-linux-amd64")]["run"]
    assert '"${K3D_SHA256_LINUX_AMD64}  $RUNNER_TEMP/k3d" | sha256sum -c -' in install
    # the k3d whose config schema the offline tests check against
    schema_script = (ROOT / "scripts" / "fetch-k3d-schema.sh").read_text()
    assert f"K3D_VERSION={env['K3D_VERSION']}" in schema_script


def test_the_k3d_job_builds_the_images_from_the_prism_checkout(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["k3d"]
    checkouts = [
        s["with"] for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")
    ]
    prism = [c for c in checkouts if c.get("repository") == "jrepp/prism-data-layer"]
    assert len(prism) == 1, checkouts
    source_dir = job["env"]["PRISM_IMAGES_SOURCE_DIR"]
    assert source_dir == "${{ github.workspace }}/" + prism[0]["path"]


def test_the_k3d_job_deploys_verifies_backs_up_and_restores(workflow: dict[str, Any]) -> None:
    k3d = steps(workflow, "k3d")
    order = [
        position(k3d, r"^scripts/setup$"),
        position(k3d, r"^\.venv/bin/inv cluster\.create deploy\.all$"),
        position(k3d, r"^\.venv/bin/inv deploy\.verify$"),
        position(k3d, r"^\.venv/bin/inv backup\.postgres$"),
        position(k3d, r"^\.venv/bin/inv backup\.restore-postgres .* --yes$"),
    ]
    assert order == sorted(order)
    backup, restore = k3d[order[3]], k3d[order[4]]
    # the restore reads the very file the backup wrote into the job's own backup directory
    assert workflow["jobs"]["k3d"]["env"]["PRISM_BACKUP_DIR"]
    assert '"$PRISM_BACKUP_DIR"/postgres-*.dump' in backup["run"]
    assert backup["id"] == "backup" and '>>"$GITHUB_OUTPUT"' in backup["run"]
    assert restore["env"]["BACKUP_FILE"] == "${{ steps.backup.outputs.file }}"
    assert '"$BACKUP_FILE"' in restore["run"]


def test_the_cluster_is_deleted_whatever_happened(workflow: dict[str, Any]) -> None:
    last = steps(workflow, "k3d")[-1]
    assert last["run"] == ".venv/bin/inv cluster.delete"
    assert last["if"] == "always()"


def test_permissions_are_read_only_and_runs_are_bounded(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert "group" in workflow["concurrency"]
    for name, job in workflow["jobs"].items():
        assert "permissions" not in job, f"job {name} widens the permissions"
        assert 0 < job["timeout-minutes"] <= 90, name
