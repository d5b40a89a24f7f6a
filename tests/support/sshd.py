"""A real OpenSSH server on 127.0.0.1 for the tests and the benchmark.

`SshServer.start(workdir, path=...)` runs Debian's `/usr/sbin/sshd -D` with a config of its own:
throwaway host and client keys, key-only login (root: `prohibit-password`), no PAM, no strict
modes, local forwarding only (the tunnel to the Kubernetes API needs direct-tcpip; nothing may
listen on the server's side), and a DEBUG log that shows every session and forward.

The login's environment comes from sshd (`SetEnv`), not from the account: PATH is what the caller
passes and HOME is a directory of the server's own, so remote commands see neither root's
dotfiles' PATH additions nor its ~/.kube/config. fabric sends commands with the env inlined, so
no AcceptEnv / PermitUserEnvironment is needed.

Fixtures: `sshd` (session-wide; PATH = this process's PATH plus the simulated-cluster binaries,
i.e. the same tools as a local run) and `sshd_factory` (servers with a PATH of the test's choice).
If sshd cannot start, the test fails: these tests are about the real thing.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def keygen(path: Path) -> Path:
    """An unencrypted ed25519 key pair at `path` / `path`.pub (reused when present)."""
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
            check=True,
        )
    return path


@dataclass
class SshServer:
    """One running sshd; `address` is what goes after -H."""

    host: str
    port: int
    key_path: Path
    workdir: Path
    user: str = field(default_factory=getpass.getuser)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        """HOME of every login on this server."""
        return self.workdir / "home"

    @property
    def log_path(self) -> Path:
        return self.workdir / "sshd.log"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        path: str,
        key_path: Path | None = None,
        host_key: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> SshServer:
        """Start sshd on a free port and wait until it speaks SSH."""
        workdir.mkdir(parents=True, exist_ok=True)
        key_path = key_path or keygen(workdir / "client_key")
        host_key = host_key or keygen(workdir / "host_key")
        authorized = workdir / "authorized_keys"
        authorized.write_text(Path(f"{key_path}.pub").read_text())
        server = cls(host=HOST, port=0, key_path=key_path, workdir=workdir)
        server.home.mkdir(exist_ok=True)
        settings = {"PATH": path, "HOME": str(server.home), **(env or {})}
        if os.geteuid() == 0:
            # sshd's privilege-separation directory; Debian creates it only when the service runs.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _attempt in range(3):  # another process may take the free port before sshd binds it
            server.port = free_port()
            config = workdir / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        f"ListenAddress {HOST}",
                        f"Port {server.port}",
                        f"HostKey {host_key}",
                        f"PidFile {workdir / 'sshd.pid'}",
                        f"AuthorizedKeysFile {authorized}",
                        "PermitRootLogin prohibit-password",
                        "PubkeyAuthentication yes",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "StrictModes no",
                        "UsePAM no",
                        "AllowTcpForwarding local",
                        "AllowAgentForwarding no",
                        "X11Forwarding no",
                        "PrintMotd no",
                        "LogLevel DEBUG",
                        "SetEnv " + " ".join(f'"{k}={v}"' for k, v in settings.items()),
                        "",
                    ]
                )
            )
            server.log_path.write_text("")
            server.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config), "-E", str(server.log_path)],
                stdin=subprocess.DEVNULL,
            )
            if server._wait_ready():
                return server
            log = server.log_path.read_text()
            server.stop()
            if "Address already in use" not in log:
                break
        raise RuntimeError(f"sshd did not start; its log:\n{server.log_path.read_text()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as probe:
                    if probe.recv(8).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def ssh_config(self, alias: str, path: Path | None = None) -> Path:
        """An ssh_config naming this server `alias`, for `inv -H alias --ssh-config FILE`."""
        path = path or self.workdir / f"ssh_config.{alias}"
        path.write_text(
            f"Host {alias}\n"
            f"    HostName {self.host}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {self.key_path}\n"
        )
        return path

    # --- what happened on the server, from its log ----------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sessions(self) -> int:
        """Commands executed so far (one SSH `exec` request each)."""
        return self.log().count("Starting session: command")

    def logins(self) -> int:
        """Successful authentications: one per SSH connection."""
        return self.log().count("Accepted publickey")

    def forwards(self) -> int:
        """direct-tcpip channels opened (the Kubernetes API tunnel)."""
        return self.log().count("server_request_direct_tcpip")


def default_path() -> str:
    """This process's PATH plus the simulated-cluster binaries: the tools of a local run."""
    from tasks._core import sim_binaries as _sim

    return os.pathsep.join([os.environ.get("PATH", ""), str(_sim.bin_dir())])


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(host key, client key), generated once per test session."""
    keys = tmp_path_factory.mktemp("ssh-keys")
    return keygen(keys / "host_key"), keygen(keys / "client_key")


@pytest.fixture(scope="session")
def sshd_factory(
    tmp_path_factory: pytest.TempPathFactory, ssh_keys: tuple[Path, Path]
) -> Iterator[Callable[..., SshServer]]:
    """Start servers on demand (`sshd_factory(path=...)`); all stop at the end of the session."""
    servers: list[SshServer] = []
    host_key, client_key = ssh_keys

    def start(path: str | None = None, env: dict[str, str] | None = None) -> SshServer:
        server = SshServer.start(
            tmp_path_factory.mktemp("sshd"),
            path=path or default_path(),
            key_path=client_key,
            host_key=host_key,
            env=env,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def sshd(sshd_factory: Callable[..., SshServer]) -> SshServer:
    """One sshd for the session, with the same tools as a local run."""
    return sshd_factory()
