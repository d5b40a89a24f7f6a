"""`inv -H host task`: the same tasks, run on a host over a real sshd on 127.0.0.1.

The host has stand-in tools (kubectl, kwokctl, helm shell scripts) that record each call and
whether it came through sshd, so a local run and a remote run can be compared command by command.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import ROOT, inv
from support.sshd import SshServer, ssh_keys, sshd_factory  # noqa: F401  (fixtures)

SIDE = "TOOLBOX_SIDE"  # set to "remote" by the test servers' sshd (SetEnv), unset locally
LOCAL_PATH = "/usr/bin:/bin"

FAKES = {
    "kubectl": """
case "$*" in
  *"version --client"*) echo '{"clientVersion": {"gitVersion": "v1.32.4"}}' ;;
  *"get nodes"*) printf 'NAME                 STATUS\\nprism-local-node-0   Ready\\n' ;;
esac
""",
    "kwokctl": """
case "$1" in
  --version) echo "kwokctl version v0.7.0" ;;
  get) /bin/cat "${0%/*}/clusters" ;;
esac
""",
    "helm": """
echo "v3.17.4+gabcdef0"
""",
}


class Toolbox:
    """A directory of stand-in tools, and what they were asked to do (side, argv)."""

    def __init__(self, path: Path, tools: tuple[str, ...] = tuple(FAKES)) -> None:
        self.path = path
        path.mkdir(parents=True)
        for tool in tools:
            script = path / tool
            script.write_text(
                "#!/bin/sh\n"
                f'echo "${{{SIDE}:-local}} {tool} $*" >> "${{0%/*}}/calls"\n' + FAKES[tool]
            )
            script.chmod(0o755)
        self.clusters()

    def clusters(self, *names: str) -> None:
        (self.path / "clusters").write_text("".join(f"{name}\n" for name in names))

    def calls(self, side: str | None = None) -> list[str]:
        log = self.path / "calls"
        lines = log.read_text().splitlines() if log.exists() else []
        if side is None:
            return lines
        return [line.split(" ", 1)[1] for line in lines if line.startswith(f"{side} ")]

    def reset(self) -> None:
        (self.path / "calls").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def box_tools(tmp_path_factory: pytest.TempPathFactory) -> Toolbox:
    return Toolbox(tmp_path_factory.mktemp("box") / "bin")


@pytest.fixture(scope="module")
def box(sshd_factory: Callable[..., SshServer], box_tools: Toolbox) -> SshServer:  # noqa: F811
    """A host with kubectl, kwokctl and helm (the stand-ins) and nothing else of ours."""
    return sshd_factory(path=f"{box_tools.path}:{LOCAL_PATH}", env={SIDE: "remote"})


@pytest.fixture
def tools(box_tools: Toolbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Toolbox]:
    """The stand-ins on this machine's PATH too, the kwok provider, a fresh call log."""
    monkeypatch.setenv("PATH", f"{box_tools.path}:{LOCAL_PATH}")
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.delenv(SIDE, raising=False)
    box_tools.reset()
    box_tools.clusters()
    yield box_tools


def on(server: SshServer, *args: str, alias: str = "box") -> subprocess.CompletedProcess[str]:
    """`inv -H <alias> --ssh-config <file> ARGS`, the way a user reaches a workstation."""
    return inv("-H", alias, "--ssh-config", str(server.ssh_config(alias)), *args)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(output: str, prefix: str = "") -> list[str]:
    """Output lines without colours and without the `[host] ` prefix of echoed commands."""
    lines = ANSI.sub("", output).splitlines()
    return [line.removeprefix(prefix) for line in lines]


def created_on(host: str, output: str) -> bool:
    """Does the (dry-run) output show `kwokctl ... create cluster` echoed for `host`?"""
    return any(
        line.startswith(f"[{host}] kwokctl ") and " create cluster " in line
        for line in plain(output)
    )


# --- the same commands, on the host ------------------------------------------------------


def test_doctor_probes_the_hosts_tools_with_the_same_commands(box: SshServer, tools: Toolbox):
    local = inv("doctor")
    tools_local = tools.calls("local")
    remote = on(box, "doctor")

    assert tools.calls("remote") == tools_local
    assert "kubectl ok" in " ".join(remote.stdout.split())
    tool_lines = [line for line in plain(local.stdout) if line.startswith("  ") and "[" in line]
    assert tool_lines == [line for line in plain(remote.stdout) if line in tool_lines]
    assert len(tool_lines) == 5


def test_cluster_status_shows_the_hosts_nodes(box: SshServer, tools: Toolbox):
    tools.clusters("prism-local")
    local = inv("cluster.status")
    remote = on(box, "cluster.status")

    assert remote.returncode == 0, remote.stderr
    assert plain(remote.stdout) == plain(local.stdout)
    assert "prism-local-node-0   Ready" in remote.stdout
    assert (
        tools.calls("remote")
        == tools.calls("local")
        == [
            "kwokctl get clusters",
            "kubectl --context kwok-prism-local get nodes -o wide",
        ]
    )


def test_dry_create_prints_the_hosts_commands_and_only_queries_run(box: SshServer, tools: Toolbox):
    local = inv("--dry", "cluster.create")
    remote = on(box, "--dry", "cluster.create")

    assert remote.returncode == 0, remote.stderr
    assert plain(remote.stdout, "[box] ") == plain(local.stdout)
    assert created_on("box", remote.stdout)
    queries = tools.calls("remote")
    # asked side by side, so in any order; on a host, also the tunnel's kubeconfig, for the
    # task that would come next (cluster.next_questions)
    tunnel = "kubectl config view --raw --minify --flatten --context kwok-prism-local"
    assert sorted(queries) == sorted([*tools.calls("local"), tunnel])
    assert not [call for call in queries if " create " in call or " apply " in call]


def test_stdout_and_exit_code_of_a_failing_remote_command_come_back(box: SshServer, tools: Toolbox):
    result = inv("-H", "box", "--ssh-config", str(box.ssh_config("box")), "--", "echo out; exit 3")
    assert result.returncode == 3
    assert "out" in result.stdout


# --- several hosts, pre-tasks --------------------------------------------------------------


def test_each_host_gets_its_own_run_over_one_connection(box: SshServer, tools: Toolbox):
    tools.clusters("prism-local")
    config = box.ssh_config("box")
    logins = box.logins()

    result = inv(
        "-H",
        f"box,{box.address}",
        "--ssh-config",
        str(config),
        "-i",
        str(box.key_path),
        "cluster.status",
        "cluster.list",
    )

    assert result.returncode == 0, result.stderr
    status = ["kwokctl get clusters", "kubectl --context kwok-prism-local get nodes -o wide"]
    listing = ["kwokctl get clusters"]
    assert tools.calls("remote") == status + listing + status + listing  # host by host
    assert box.logins() - logins == 2  # one SSH connection per host, shared by its tasks


def test_a_host_named_twice_runs_once(box: SshServer, tools: Toolbox):
    config = box.ssh_config("box")
    result = inv("-H", "box,box", "--ssh-config", str(config), "cluster.list")  # fabric: twice
    assert result.returncode == 0, result.stderr
    assert tools.calls("remote") == ["kwokctl get clusters"]


def test_dry_run_prints_what_would_run_on_each_host(box: SshServer, tools: Toolbox):
    result = inv(
        "-H",
        f"box,{box.address}",
        "--ssh-config",
        str(box.ssh_config("box")),
        "-i",
        str(box.key_path),
        "--dry",
        "cluster.create",
    )

    assert result.returncode == 0, result.stderr
    assert created_on("box", result.stdout)
    assert created_on(box.address, result.stdout)


PROJECT = '''
from invoke import task

@task
def prepare(c):
    """Prepare (the pre-task)."""
    c.run(f"echo prepare {c.config.greeting}")

@task(pre=[prepare])
def build(c):
    """Build."""
    c.run("echo build")

@task(pre=[prepare], post=[build])
def ship(c):
    """Ship."""
    c.run("echo ship")
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Another project's tasks.py, with its invoke.yaml (and a fabric.yaml that must not count)."""
    (tmp_path / "tasks.py").write_text(PROJECT)
    (tmp_path / "invoke.yaml").write_text("greeting: from-invoke-yaml\n")
    (tmp_path / "fabric.yaml").write_text("greeting: from-fabric-yaml\n")
    return tmp_path


def test_pre_and_post_tasks_run_once_per_host_on_that_host(box: SshServer, project: Path):
    hosts = f"box,{box.address}"
    config = box.ssh_config("box")
    result = subprocess.run(
        [
            str(ROOT / ".venv/bin/inv"),
            "-H",
            hosts,
            "-S",
            str(config),
            "-i",
            str(box.key_path),
            "--echo",
            "ship",
            "build",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    ran = [line for line in plain(result.stdout) if line.startswith("[") and " echo " in line]
    one_host = [
        "echo prepare from-invoke-yaml",
        "echo ship",
        "echo build",  # ship's post-task; the `build` asked for next is the same call
    ]
    assert ran == [f"[box] {line}" for line in one_host] + [
        f"[{box.address}] {line}" for line in one_host
    ]  # host by host, each line labelled


def test_deploy_all_creates_the_cluster_on_each_host_not_here():
    from invoke.parser import Argument, ParserContext, ParseResult

    import tasks
    from tasks._remote.hosts import HostCall, HostConfig, HostExecutor

    core_context = ParserContext(args=[Argument(names=("H", "hosts"))])
    core_context.args.hosts.value = "a,b"
    executor = HostExecutor(tasks.ns, HostConfig(), ParseResult([core_context]))

    calls = executor.expand_calls(executor.normalize(("deploy.all",)))

    assert [(call.task.name, call.init_kwargs["host"]) for call in calls] == [
        ("create", "a"),
        ("create", "b"),
        ("load", "a"),  # images.load: the images come in before the workloads
        ("load", "b"),
        ("all", "a"),
        ("all", "b"),
    ]
    assert all(isinstance(call, HostCall) for call in calls)


# --- failures: one line, non-zero -----------------------------------------------------------


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_unreachable_host_is_one_line(box: SshServer, tools: Toolbox):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = inv("-H", f"root@127.0.0.1:{port}", "-i", str(box.key_path), "cluster.status")
    assert_one_line(result, 255, f"cannot reach root@127.0.0.1:{port}", "connection refused")


def test_host_that_does_not_speak_ssh_is_one_line(box: SshServer, tools: Toolbox):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        connection, _ = listener.accept()
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        result = inv("-H", f"root@127.0.0.1:{port}", "-i", str(box.key_path), "cluster.status")
    finally:
        listener.close()
    assert_one_line(result, 255, f"SSH to root@127.0.0.1:{port} failed")


def test_refused_key_is_one_line(box: SshServer, tools: Toolbox, tmp_path: Path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    result = inv("-H", box.address, "-i", str(stranger), "cluster.status")
    assert_one_line(result, 255, f"cannot log in to {box.address}", "authentication refused")


def test_missing_key_file_is_one_line(box: SshServer, tools: Toolbox, tmp_path: Path):
    result = inv("-H", box.address, "-i", str(tmp_path / "absent"), "cluster.status")
    assert_one_line(result, 1, f"cannot read {tmp_path / 'absent'}")


@pytest.fixture(scope="module")
def bare(
    sshd_factory: Callable[..., SshServer],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SshServer, Toolbox]:
    """A host with kwokctl but no kubectl (nor anything else on its PATH)."""
    toolbox = Toolbox(tmp_path_factory.mktemp("bare") / "bin", tools=("kwokctl",))
    return sshd_factory(path=str(toolbox.path), env={SIDE: "remote"}), toolbox


def test_missing_kubectl_on_the_host_is_one_line(bare: tuple[SshServer, Toolbox], tools: Toolbox):
    server, toolbox = bare
    toolbox.clusters("prism-local")
    result = on(server, "cluster.status")

    assert result.stdout.startswith("provider: kwok")
    assert_one_line(result, 127, "kubectl not found on host box; install it there")


# --- many hosts: labelled, at once, one failing ---------------------------------------------


@pytest.fixture(scope="module")
def two_hosts(
    sshd_factory: Callable[..., SshServer],  # noqa: F811
    box_tools: Toolbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SshServer, SshServer, Path]:
    """Hosts `a` and `b`: two sshd on loopback, each with the stand-in tools, one ssh_config."""
    a, b = (sshd_factory(path=f"{box_tools.path}:{LOCAL_PATH}", env={SIDE: "remote"}) for _ in "ab")
    config = tmp_path_factory.mktemp("two-hosts") / "ssh_config"
    config.write_text(a.ssh_config("a").read_text() + b.ssh_config("b").read_text())
    return a, b, config


def labelled(output: str) -> dict[str, list[str]]:
    """Each host's lines, by the label they carry; "" for the lines of the summary."""
    found: dict[str, list[str]] = {}
    for line in plain(output):
        match = re.match(r"\[(\w+)\] (.*)", line)
        host, text = (match[1], match[2]) if match else ("", line)
        found.setdefault(host, []).append(text)
    return found


def test_parallel_hosts_run_at_once_with_labelled_lines_and_a_summary(
    two_hosts: tuple[SshServer, SshServer, Path], tools: Toolbox
):
    _, _, config = two_hosts
    result = inv("--ssh-config", str(config), "-H", "a,b", "--parallel", "doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = labelled(result.stdout)
    for host in "ab":
        assert lines[host][0].startswith("provider: kwok"), lines[host]
        assert any(line.startswith("  kubectl   ok") for line in lines[host])
    summary = [line for line in lines[""] if line]
    assert summary[0] == "hosts (at once): 2 of 2 succeeded"
    assert [line.split(":")[0] for line in summary[1:]] == ["✓ a", "✓ b"]
    probes = Counter(tools.calls("remote"))  # both hosts asked their tools the same questions
    assert probes and all(count % 2 == 0 for count in probes.values())


@pytest.mark.parametrize(
    ("hosts", "flags", "mode"),
    [("b,a", [], "one after another"), ("a,b", ["--parallel"], "at once")],
    ids=["in-turn", "parallel"],
)
def test_a_failing_host_does_not_hide_the_other_and_the_exit_is_its(
    two_hosts: tuple[SshServer, SshServer, Path],
    tools: Toolbox,
    tmp_path: Path,
    hosts: str,
    flags: list[str],
    mode: str,
):
    """Host b's sshd is down. In turn (b first) and at once (`-H a,b --parallel`, the issue's
    clause): a runs all the way, b's failure is one line, b's status is the exit status, and
    the summary names both in the order -H gave them."""
    a, _, _ = two_hosts
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on: sshd is "down" there
    config = tmp_path / "ssh_config"
    config.write_text(
        a.ssh_config("a").read_text()
        + f"Host b\n    HostName 127.0.0.1\n    Port {closed.getsockname()[1]}\n"
    )
    try:
        result = inv("--ssh-config", str(config), "-H", hosts, *flags, "doctor")
    finally:
        closed.close()

    assert result.returncode == 255, result.stdout + result.stderr  # ssh's, for b
    errors = labelled(result.stderr)
    assert len(errors["b"]) == 1  # one line, not every tool "missing"
    assert errors["b"][0].startswith("cannot reach b (")
    assert errors["b"][0].endswith("connection refused; is sshd running there?")
    out = labelled(result.stdout)
    assert out["a"][0].startswith("provider: kwok")  # a ran all the way, beside the failure
    assert any(line.startswith("  kubectl   ok") for line in out["a"])
    assert out["a"][-1] == "doctor: all required tools present"
    summary = [line for line in out[""] if line]
    assert summary[0] == f"hosts ({mode}): 1 of 2 succeeded"
    lines = dict(zip(hosts.split(","), summary[1:], strict=True))
    assert lines["a"].startswith("✓ a: done in ")
    assert lines["b"].startswith("✗ b: exit 255 after ") and "cannot reach b (" in lines["b"]
    assert [line[2] for line in summary[1:]] == hosts.split(",")  # in the order -H named them


def test_paths_expand_on_the_host_not_here(
    two_hosts: tuple[SshServer, SshServer, Path],
    tools: Toolbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    """The default data directory is `~/...`: `~` is the host's home, never this machine's."""
    a, _, config = two_hosts
    monkeypatch.delenv("PRISM_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "local-home"))
    result = inv(
        "--ssh-config", str(config), "-H", "a", "--dry", "cluster.create", env={"PRISM_ENV": "prod"}
    )

    assert result.returncode == 0, result.stdout + result.stderr
    work = f"{a.home}/.local/share/prism/prod/kwok"
    assert f"[a] sh -c 'umask 077 && mkdir -p {work} && cat > {work}/kwokctl-prism-prod.yaml'" in (
        plain(result.stdout)
    )
    assert str(tmp_path / "local-home") not in result.stdout


@pytest.mark.parametrize(
    ("configured", "on_host"),
    [
        ("kube/prism.yaml", "{home}/kube/prism.yaml"),  # relative: to the host's home
        ("~/.kube/prism.yaml", "{home}/.kube/prism.yaml"),
        ("/srv/prism/kubeconfig", "/srv/prism/kubeconfig"),
    ],
    ids=["relative", "tilde", "absolute"],
)
def test_the_kubeconfig_path_expands_on_the_host(
    two_hosts: tuple[SshServer, SshServer, Path],
    tools: Toolbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    configured: str,
    on_host: str,
):
    """Here a relative path is relative to this project's directory; on a -H host, where this
    project's directory is not, to the host's home."""
    a, _, config = two_hosts
    monkeypatch.setenv("HOME", str(tmp_path / "local-home"))
    result = inv(
        "--ssh-config", str(config), "-H", "a", "--dry", "cluster.create",
        env={"PRISM_ENV": "prod", "PRISM_CLUSTER_KUBECONFIG": configured},
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    expected = on_host.format(home=a.home)
    out = "\n".join(plain(result.stdout))
    assert f" create cluster --name prism-prod --kubeconfig {expected} " in out, out
    assert f"kubectl --kubeconfig {expected} --context kwok-prism-prod " in out
    assert str(tmp_path / "local-home") not in out and f"{ROOT}/" not in out


def test_ingress_hosts_over_ssh_refuses_and_edits_no_hosts_file(
    two_hosts: tuple[SshServer, SshServer, Path], tools: Toolbox, tmp_path: Path
):
    """It would open this machine's file (Python, not a command on the host): one line instead."""
    _, _, config = two_hosts
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n")
    result = inv(
        "--ssh-config", str(config), "-H", "a", "ingress.hosts", "--hosts-file", str(hosts_file)
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "ingress.hosts edits the hosts file of the machine it runs on, and over -H that is this "
            "one, not a; run `inv ingress.hosts` on a itself"
        )
    ), result.stderr
    assert hosts_file.read_text() == "127.0.0.1 localhost\n"


def test_a_busy_port_is_checked_on_the_host(
    two_hosts: tuple[SshServer, SshServer, Path], tools: Toolbox
):
    _, _, config = two_hosts
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 6743))  # prod's API port, taken on the host
        taken.listen()
        result = inv(
            "--ssh-config",
            str(config),
            "-H",
            "a",
            "--dry",
            "cluster.create",
            env={"PRISM_ENV": "prod"},
        )

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("port 6743 (") and "is already in use on host a;" in last
