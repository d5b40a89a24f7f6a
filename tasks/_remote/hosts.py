"""The fabric side of `inv -H host ...`: per-host execution, SSH errors as one line, remote hints.

Imported only when SSH flags are on the command line (see _program), because fabric and paramiko
cost more to import than `inv --list` takes. What runs where: every command goes through
`_command.run` → `c.run`, and `c` is a `HostConnection` here, so it runs on the host; settings
(`_settings.load`) and rendering stay on this machine.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fabric
import fabric.main
import paramiko
from fabric.exceptions import NothingToDo
from fabric.runners import Remote
from fabric.tasks import ConnectionCall
from invoke import Call, Exit, Task, UnexpectedExit
from invoke.config import Config as InvokeConfig
from invoke.config import merge_dicts

from .._core.calls import parallel_argument
from .._core.command import interrupted, label

# Exit status for "could not reach or log in to a host", as ssh(1) uses it.
SSH_FAILED = 255
# How long to wait for a host to answer; ssh_config's ConnectTimeout and -t override it.
CONNECT_TIMEOUT = 15

_PLAIN_WORD = re.compile(r"[\w./+-]+")

# paramiko logs a failed handshake with a traceback from its transport thread; the user gets
# HostConnection's one line instead (`inv --debug` still shows everything).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class HostConfig(fabric.Config):
    """fabric's configuration under invoke's names: invoke.yaml, INVOKE_* and the `tasks`
    collection, so that a project's and a user's invoke settings apply with -H too."""

    prefix = "invoke"

    @staticmethod
    def global_defaults() -> dict[str, Any]:
        defaults: dict[str, Any] = fabric.Config.global_defaults()
        merge_dicts(
            defaults,
            {
                "tasks": InvokeConfig.global_defaults()["tasks"],  # fabric would look for fabfile
                "runners": {"remote": HostRemote},
                "timeouts": {"connect": CONNECT_TIMEOUT},
            },
        )
        return defaults


class HostRemote(Remote):
    """fabric's remote runner, guarding each command against a missing tool."""

    def start(self, command: str, shell: str, env: dict[str, Any], timeout: Any = None) -> None:
        # A missing tool exits 127 quietly (no "bash: kubectl: command not found" line), and
        # HostConnection.run turns that into one line naming the tool and the host.
        super().start(_guarded(command), shell, env, timeout)


def _guarded(command: str) -> str:
    """Exit 127 silently when the command's program is missing (POSIX shells, fish and zsh
    alike: the same assumption fabric makes when it inlines `export VAR=value && ...`)."""
    tool = _program_of(command)
    if tool is None:
        return command
    return f"command -v {shlex.quote(tool)} >/dev/null 2>&1 || exit 127; {command}"


def _program_of(command: str) -> str | None:
    """The program a `shlex.join`-ed command starts with; None for anything more shell-like."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words[0] if words and _PLAIN_WORD.fullmatch(words[0]) else None


def tool_missing(c: Any, tool: str) -> Exit:
    """The one-line error for a command the host does not have."""
    return Exit(f"{tool} not found on host {label(c)}; install it there", code=127)


class HostConnection(fabric.Connection):
    """A Connection that reports failures in one line, naming the host as the user wrote it."""

    # Declared here: a Context turns assignments to undeclared attributes into config keys,
    # which every connection shares.
    label: str = ""

    def __init__(self, host: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(host, *args, **kwargs)
        self.label = host

    def open(self) -> Any:
        with self._ssh_errors():
            opened = super().open()
        _no_delay(self.transport)
        return opened

    def run(self, command: str, **kwargs: Any) -> Any:
        # Several hosts' commands interleave under --dry/--echo; say which host each is for.
        kwargs.setdefault("echo_format", f"[{self.label}] {self.config.run.echo_format}")
        try:
            with self._ssh_errors():
                return super().run(command, **kwargs)
        except UnexpectedExit as failure:
            tool = _program_of(command)
            if failure.result.exited == 127 and tool:
                raise tool_missing(self, tool) from None
            raise

    @contextmanager
    def _ssh_errors(self) -> Iterator[None]:
        resolved = f"{self.user}@{self.host}:{self.port}"
        where = self.label if self.label == resolved else f"{self.label} ({resolved})"
        try:
            yield
        except paramiko.PasswordRequiredException:
            raise Exit(
                f"cannot log in to {where}: the key is encrypted; add --prompt-for-passphrase "
                "or load it into ssh-agent",
                code=SSH_FAILED,
            ) from None
        except paramiko.AuthenticationException as error:
            raise Exit(
                f"cannot log in to {where}: authentication refused ({error}); "
                "check the key (-i) and the user",
                code=SSH_FAILED,
            ) from None
        except paramiko.BadHostKeyException:
            raise Exit(
                f"host key of {where} does not match known_hosts; if the host was reinstalled, "
                f"remove the old key with `ssh-keygen -R {self.host}`",
                code=SSH_FAILED,
            ) from None
        except socket.gaierror as error:
            raise Exit(f"cannot resolve {where}: {error.strerror}", code=SSH_FAILED) from None
        except TimeoutError:
            raise Exit(
                f"cannot reach {where}: timed out after {self.connect_timeout}s (-t changes it)",
                code=SSH_FAILED,
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError:
            raise Exit(
                f"cannot reach {where}: connection refused; is sshd running there?",
                code=SSH_FAILED,
            ) from None
        except (paramiko.SSHException, EOFError, ConnectionError) as error:
            raise Exit(
                f"SSH to {where} failed: {error or type(error).__name__}", code=SSH_FAILED
            ) from None
        except OSError as error:
            if error.filename:  # a local file, e.g. the -i key: not a network problem
                raise Exit(f"cannot read {error.filename}: {error.strerror}", code=1) from None
            raise Exit(
                f"cannot reach {where}: {error.strerror or error}", code=SSH_FAILED
            ) from None


class HostCall(ConnectionCall):
    """A task call bound to one host, sharing that host's connection with the other calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: dict[str, HostConnection] = kwargs.pop("connections")
        super().__init__(*args, **kwargs)

    def clone_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().clone_kwargs()
        kwargs["connections"] = self.connections
        return kwargs

    def make_context(self, config: Any) -> HostConnection:
        host = self.init_kwargs["host"]
        if host not in self.connections:
            self.connections[host] = HostConnection(host, config=config)
        return self.connections[host]


class HostExecutor(fabric.Executor):
    """Runs every call - pre- and post-tasks included - once on each host.

    fabric's own executor runs pre-tasks once, locally, and never deduplicates: `-H box
    deploy.all` would create the cluster on this machine. Here the call list is expanded and
    deduplicated as plain invoke does, then each call runs on every host in turn (task-major,
    like fabric), over one SSH connection per host.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: dict[str, HostConnection] = {}

    def hosts(self) -> list[str]:
        """-H's hosts, each once: fabric would run a host given twice twice."""
        value = self.core[0].args.hosts.value if self.core else None
        return list(dict.fromkeys(h.strip() for h in (value or "").split(",") if h.strip()))

    def expand_calls(self, calls: list[Any], apply_hosts: bool = True) -> list[Any]:
        flat = _with_pre_and_post(calls)
        if self.config.tasks.dedupe:
            flat = super(fabric.Executor, self).dedupe(flat)
        hosts = self.hosts()
        expanded: list[Call] = [
            self.parameterize(call, {"host": host}) for call in flat for host in hosts
        ]
        if not hosts:
            expanded = flat  # SSH flags without -H (`inv -i key doctor`): plain invoke
        if self.core and self.core.remainder:  # `inv -H box -- uname -a`
            expanded += super().expand_calls([])
        return expanded

    def parameterize(self, call: Any, connection_init_kwargs: dict[str, Any]) -> HostCall:
        return call.clone(
            into=HostCall,
            with_={"init_kwargs": connection_init_kwargs, "connections": self.connections},
        )

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute(*args, **kwargs)
        finally:
            for connection in self.connections.values():
                connection.close()


def _with_pre_and_post(calls: list[Any]) -> list[Call]:
    """invoke's expansion (pre-tasks, the call, post-tasks, recursively), without hosts."""
    expanded: list[Call] = []
    for call in calls:
        call = Call(call) if isinstance(call, Task) else call
        expanded += [*_with_pre_and_post(call.pre), call, *_with_pre_and_post(call.post)]
    return expanded


class HostProgram(fabric.main.Fab):
    """fabric's `fab` program; with HostConfig it finds `tasks` and invoke.yaml like `inv`."""

    def core_args(self) -> list[Any]:
        return [*super().core_args(), parallel_argument()]

    def update_config(self) -> None:
        """fabric puts -t into connect_kwargs while our default sits in timeouts.connect, and
        Connection refuses to choose between the two: keep -t in timeouts.connect only."""
        super().update_config()
        timeout = self.args["connect-timeout"].value
        if timeout:
            overrides = self.config._overrides
            overrides["connect_kwargs"] = {
                k: v for k, v in overrides.get("connect_kwargs", {}).items() if k != "timeout"
            }
            overrides["timeouts"] = {**overrides.get("timeouts", {}), "connect": int(timeout)}
            self.config.merge()

    def execute(self) -> None:
        try:
            super().execute()
        except NothingToDo as error:
            raise Exit(f"{error} (give hosts with -H)", code=1) from None
        except KeyboardInterrupt:
            raise interrupted() from None
        except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as error:
            # HostConnection names the host; this catches what escapes it (tunnel threads ...).
            raise Exit(f"SSH failed: {error or type(error).__name__}", code=SSH_FAILED) from None


def make_program(**identity: Any) -> HostProgram:
    return HostProgram(executor_class=HostExecutor, config_class=HostConfig, **identity)


def _no_delay(transport: Any) -> None:
    """Send small packets at once on the connection's TCP socket. Every Kubernetes API request
    through the tunnel is a small write answered by a small read; with Nagle's algorithm on,
    each waits for the peer's delayed ACK (measured: 33 ms per request through the tunnel
    instead of 10). OpenSSH sets the same option on interactive sessions. A ProxyCommand's
    pipe is no TCP socket and is left as it is."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
