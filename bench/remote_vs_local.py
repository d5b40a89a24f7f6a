"""`inv -H box deploy.all` against the local `inv deploy.all`, both re-runs with nothing to change,
on the same simulated cluster (issue #15: remote no slower than 1.5x local).

Run, from the project root, inside a loopback-only network namespace (needs openssh-server, see
scripts/install-test-deps.sh):

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/remote_vs_local.py [runs]'

Set-up (not timed): an isolated home (bench/_simbench.py), a throwaway sshd on 127.0.0.1
(tests/support/sshd.py) whose logins get KWOK_WORKDIR, KUBECACHEDIR and KUBECONFIG of that home
and the local run's PATH (the host is this machine: the same kwokctl, kubectl and cluster), a new
cluster (`inv cluster.create`), one `inv deploy.all`, then a wait until every resourceVersion in
the prism namespaces has stopped moving for QUIET seconds: longer than the HPA controller's 15 s
sync period, since prism-proxy's HPA scales its Deployment up to minReplicas one period after
the deploy and writes its status again one period later (bench/deploy.py's `settle`, two
snapshots 1 s apart, returns before either; a re-run meeting them counts the Deployment, its
PodDisruptionBudget and the HPA as "configured"). The ownership marker that
`cluster.create` left is copied to the name it has for the host (`user@127.0.0.1:port-...`):
what `inv -H box cluster.create` would have recorded for this very cluster (same kube-system
UID), so that both runs go through the same ownership check, UID query included.

Per run (default 5), interleaved so that load drifts hit both alike:
  (a) local  - `inv deploy.all`, timed as a whole process;
  (b) remote - `inv -H box --ssh-config FILE deploy.all`, timed as a whole process (SSH
               connection, commands on the host and the tunnel to its API server included).
Each must exit 0 and print the deploy's "nothing changed" line. The sshd log gives the exec
sessions, logins and tunnel channels of each remote run. At the end, every resourceVersion
recorded after settling must be unchanged. The cluster is deleted and sshd stopped however the
benchmark ends (also on Ctrl-C / SIGTERM). Prints medians and the ratio remote/local
(target <= 1.5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _simbench as sb
import deploy

sys.path.insert(1, str(sb.ROOT / "tests"))

from support.sshd import SSHD, SshServer, default_path

HOST = "box"
HOST_ENV = ("KWOK_WORKDIR", "KUBECACHEDIR", "KUBECONFIG")  # the host's own settings (SetEnv)
TARGET = 1.5
QUIET = 20.0  # seconds without any change before the runs start
QUIET_LIMIT = 120.0  # ... waited for at most this long
NOTHING_CHANGED = re.compile(r"nothing changed: .*\(([0-9.]+)s\)")


def no_op(ran: sb.Ran, label: str) -> float:
    """The task's own total from its "nothing changed" line; anything else is an error."""
    match = NOTHING_CHANGED.search(ran.stdout)
    if not ran.ok or not match:
        raise sb.BenchError(
            f"{label} `{' '.join(ran.argv[1:])}` did not report a no-op "
            f"(exit {ran.returncode}):\n{ran.tail()}"
        )
    return float(match.group(1))


def settle_quietly(home: sb.Home, resources: list[str]) -> tuple[dict[deploy.Key, str], float]:
    """Snapshots ~1 s apart until none has changed for QUIET seconds (bounded). Returns the
    last snapshot and the seconds waited."""
    started = time.monotonic()
    previous = deploy.versions(home, resources)
    quiet_since = started
    while time.monotonic() - quiet_since < QUIET:
        if time.monotonic() - started > QUIET_LIMIT:
            raise sb.BenchError(f"cluster never quiet for {QUIET:.0f}s in {QUIET_LIMIT:.0f}s")
        time.sleep(1)
        current = deploy.versions(home, resources)
        if deploy.state(current) != deploy.state(previous):
            quiet_since = time.monotonic()
        previous = current
    return previous, time.monotonic() - started


def share_ownership(server: SshServer) -> None:
    """The local marker of the cluster, under the host's name for it (tasks/_core/guard.py)."""
    clusters = Path(os.environ["PRISM_DATA_DIR"]) / sb.ENV / "clusters"
    local = clusters / f"kwok-{sb.CLUSTER}.json"
    if not local.is_file():
        raise sb.BenchError(f"cluster.create left no marker at {local}")
    remote = clusters / f"{server.user}@{server.host}:{server.port}-{local.name}"
    shutil.copy2(local, remote)


def main() -> None:
    sb.require_loopback_only("remote_vs_local.py")
    sb.on_signals_exit()
    runs = sb.runs_argument(5)
    if not Path(SSHD).is_file():
        sys.exit(f"needs {SSHD} (openssh-server): run scripts/install-test-deps.sh")
    sb.header(f"inv deploy.all re-run: remote (-H {HOST}, sshd on 127.0.0.1) vs local, {runs} runs")
    local: list[float] = []
    remote: list[float] = []
    local_rep: list[float] = []
    remote_rep: list[float] = []
    with sb.isolated_home() as home:
        env = {key: os.environ[key] for key in HOST_ENV}
        server = SshServer.start(home.path / "sshd", path=default_path(), env=env)
        try:
            ssh = ("-H", HOST, "--ssh-config", str(server.ssh_config(HOST)))
            with sb.fresh_cluster(home):
                share_ownership(server)
                first = sb.inv("deploy.all")
                resources = deploy.listable_namespaced(home)
                before, waited = settle_quietly(home, resources)
                print(
                    f"set-up: first deploy {first.seconds:.2f}s, then {waited:.1f}s until "
                    f"nothing had changed for {QUIET:.0f}s",
                    flush=True,
                )
                for i in range(runs):
                    ran = sb.inv("deploy.all", check=False)
                    local_rep.append(no_op(ran, "local"))
                    local.append(ran.seconds)
                    counts = (server.sessions(), server.logins(), server.forwards())
                    ran = sb.inv(*ssh, "deploy.all", check=False)
                    remote_rep.append(no_op(ran, "remote"))
                    remote.append(ran.seconds)
                    sessions, logins, forwards = (
                        now - was
                        for now, was in zip(
                            (server.sessions(), server.logins(), server.forwards()),
                            counts,
                            strict=True,
                        )
                    )
                    print(
                        f"run {i + 1}: local {local[-1]:.2f}s (reported {local_rep[-1]:.1f}), "
                        f"remote {remote[-1]:.2f}s (reported {remote_rep[-1]:.1f}; sshd: "
                        f"{sessions} exec sessions, {logins} logins, {forwards} tunnel channels)",
                        flush=True,
                    )
                after = deploy.versions(home, resources)
                unchanged, lines = deploy.compare(before, after)
                print("\n".join(lines), flush=True)
        finally:
            server.stop()
    ml, mr = statistics.median(local), statistics.median(remote)
    print()
    print(f"local  inv deploy.all:       {sb.stats(local)}")
    print(f"        (task's total):      {sb.stats(local_rep)}")
    print(f"remote inv -H deploy.all:    {sb.stats(remote)}")
    print(f"        (task's total):      {sb.stats(remote_rep)}")
    verdict = "met" if mr / ml <= TARGET else "missed"
    print(f"ratio remote/local (medians): {mr / ml:.2f}  (target <= {TARGET}: {verdict})")
    print(f"after: {sb.machine()}")
    print(json.dumps({"local": local, "remote": remote, "unchanged": unchanged}))
    if not unchanged:
        sys.exit("a re-run changed objects (see CHANGED lines above)")


if __name__ == "__main__":
    main()
