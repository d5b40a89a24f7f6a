"""The README cannot drift: its task reference is generated, its test command is CI's."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import task_reference  # noqa: E402


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_task_reference_matches_the_collection() -> None:
    text = readme()
    start, end = text.index(task_reference.BEGIN), text.index(task_reference.END)
    assert text[start : end + len(task_reference.END)] == task_reference.reference(), (
        "README task reference is stale: run .venv/bin/python scripts/task_reference.py --write"
    )


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.+?)\n```", readme(), re.S)
    assert "scripts/test" in commands, commands
    assert re.search(r"^scripts/test\b", (ROOT / ".ci" / "run").read_text(), re.M)


def test_main_job_command_is_in_the_readme() -> None:
    assert "scripts/setup && .venv/bin/inv cluster.create deploy.all" in readme()
