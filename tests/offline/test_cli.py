"""The command line as a user meets it: --list, --help, and one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import inv

import tasks

NAMESPACES = ("cluster", "images", "backends", "deploy", "ingress", "observe", "backup", "chaos")


def all_tasks(collection=tasks.ns, prefix=""):  # type: ignore[no-untyped-def]
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, f"{prefix}{name}.")


def test_list_shows_every_namespace_with_help() -> None:
    result = inv("--list")
    assert result.returncode == 0, result.stderr
    for namespace in NAMESPACES:
        assert f"  {namespace}." in result.stdout
    assert "doctor" in result.stdout


@pytest.mark.parametrize("name", [name for name, _ in all_tasks()])
def test_every_task_has_a_one_line_doc_and_help_for_every_flag(name: str) -> None:
    task = dict(all_tasks())[name]
    assert (task.__doc__ or "").strip(), f"{name} has no docstring"
    saved = dict(task.help)  # get_arguments() pops each flag's help out of task.help
    try:
        undocumented = [a.name for a in task.get_arguments() if not a.help]
    finally:
        task.help = saved
    assert not undocumented, f"{name}: flags without help: {undocumented}"


def assert_one_clear_line(result, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert expected in result.stderr, result.stderr


def test_unknown_environment(tmp_path: Path) -> None:
    result = inv("deploy.render", env={"PRISM_ENV": "qa"})
    assert_one_clear_line(result, "unknown environment PRISM_ENV='qa'; choose one of: local")


def test_malformed_dotenv_line(tmp_path: Path) -> None:
    dotenv = tmp_path / "broken.env"
    dotenv.write_text("PRISM_ENV=dev\nexport = = =\n")
    result = inv("deploy.render", env={"PRISM_DOTENV": str(dotenv)})
    assert_one_clear_line(result, "broken.env:2: cannot parse 'export = = ='")


def test_config_value_of_wrong_type(tmp_path: Path) -> None:
    result = inv("deploy.render", env={"PRISM_DEPLOY_TIMEOUT": "forever"})
    assert_one_clear_line(result, "PRISM_DEPLOY_TIMEOUT='forever' is not a whole number")


def test_invoke_yaml_value_of_wrong_type(tmp_path: Path) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text("cluster:\n  agents: two\n")
    result = inv("-f", str(config), "deploy.render")
    assert_one_clear_line(result, "config cluster.agents is 'two' (str); expected int")


def test_unknown_flag_value() -> None:
    result = inv("doctor", "--provider", "minikube")
    assert_one_clear_line(
        result, "unknown cluster provider 'minikube'; choose one of: auto, k3d, kwok"
    )


def test_unknown_overlay() -> None:
    result = inv("deploy.render", "--overlay", "qa")
    assert_one_clear_line(
        result, "unknown overlay 'qa'; choose one of: ci, dev, local, prod, staging"
    )


def test_missing_tool_names_the_tool_and_the_fix(tmp_path: Path) -> None:
    result = inv("deploy.render", env={"PATH": str(tmp_path), "PRISM_SIM_HOME": str(tmp_path)})
    assert_one_clear_line(result, "kubectl not found on PATH; install kubectl 1.29+")


def test_unknown_flag_is_rejected_by_the_parser() -> None:
    result = inv("deploy.render", "--overlya", "dev")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
