"""Commands in backend pods, and data streamed into and out of them.

Data goes into a pod as a length-delimited stream (`head -c <size>`), never read to end-of-input:
the simulated cluster's `kubectl exec -i` does not pass end-of-input on (a plain `cat` in the pod
waits forever), and counting bytes works whatever the exec protocol does with it. A password
travels as the first line of that stream, so it is on no command line (neither in `--echo` /
`--dry` output nor in a process list), in no file and in no log.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from invoke import Context, Exit, Result

from .._core import command as _command
from .._core import guard as _guard
from .._core import settings as _settings
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target
from . import files as _files

# Lines kubectl adds when the command in the pod fails (k3d, then the simulation); the line
# worth showing is the command's own, before them.
EXEC_NOISE = ("command terminated with exit code", "error: Internal error occurred")


KLOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d")  # kubectl's own log lines (websocket ...)


def reason(result: Result) -> str:
    """The one line that says why a command failed."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines()]
    lines = [line for line in lines if line]
    useful = [line for line in lines if not _noise(line)] or lines
    return useful[-1] if useful else f"exit code {result.exited}"


def _noise(line: str) -> bool:
    return line.startswith((*EXEC_NOISE, "prism-sent:", TAPPED)) or bool(KLOG.match(line))


# How the pod side reports a stream it sent: its producer's exit status and the byte count, on
# standard error (the data itself is on standard output). This side checks both.
SENT = re.compile(r"^prism-sent: exit=(\d+)$|^prism-sent: bytes= *(\d+)$", re.M)


def counted(producer: str) -> str:
    """Shell (in the pod) that passes `producer`'s output on unchanged and then says, on
    standard error, how `producer` exited and how many bytes went out."""
    return (
        f'exec 3>&1; {{ {producer}; echo "prism-sent: exit=$?" >&2; }} '
        '| tee /dev/fd/3 | wc -c | sed "s/^/prism-sent: bytes=/" >&2'
    )


def require_whole(result: Result, partial: Path, what: str, hint: str = "") -> None:
    """The stream arrived whole: the producer in the pod exited 0, and as many bytes arrived
    here as it sent. Raises Exit otherwise (the caller removes the partial file)."""
    hint = f" ({hint})" if hint else ""
    exits = [int(m.group(1)) for m in SENT.finditer(result.stderr or "") if m.group(1)]
    sent = [int(m.group(2)) for m in SENT.finditer(result.stderr or "") if m.group(2)]
    if not exits or not sent:
        raise Exit(f"{what}: the pod did not say how the stream ended; nothing was kept", code=1)
    if exits[-1] != 0:
        raise Exit(
            f"{what} failed: {reason(result)}; nothing was kept{hint}",
            code=1,
        )
    arrived = partial.stat().st_size
    if arrived != sent[-1]:
        raise Exit(
            f"{what}: the pod sent {sent[-1]} bytes but {arrived} arrived; nothing was kept",
            code=1,
        )


def in_pod(c: Context, pod: str, *command: str, stdin: bool = False) -> list[str]:
    """`kubectl exec` into a backend pod, pinned to the project's context."""
    s = _settings.load(c)
    t = _target.resolve(c)
    interactive = ["-i"] if stdin else []
    return [
        "kubectl",
        *_target.kube_flags(t),
        "-n",
        s.backup.namespace,
        "exec",
        *interactive,
        pod,
        "--",
        *command,
    ]


def require_pod(c: Context, pod: str, backend: str) -> None:
    s = _settings.load(c)
    t = _target.resolve(c)
    namespace = s.backup.namespace
    answer = _command.query(
        c,
        [
            "kubectl",
            *_target.kube_flags(t),
            "-n",
            namespace,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase}",
        ],
        timeout=30,
    )
    if not answer.ok:
        if "NotFound" in answer.stderr:
            raise Exit(
                f"pod {namespace}/{pod} not found on cluster {t.name}; "
                f"deploy it with `inv backends.deploy --only {backend}`",
                code=1,
            )
        raise Exit(f"cannot look up pod {namespace}/{pod}: {reason(answer)}", code=1)
    phase = answer.stdout.strip()
    if phase != "Running":
        raise Exit(
            f"pod {namespace}/{pod} is {phase or 'not running'}; "
            f"see `inv backends.status --only {backend}`",
            code=1,
        )


def stream_out(
    c: Context,
    argv: list[str],
    partial: Path,
    secret: str | None = None,
    check: Sequence[str] = (),
) -> Result:
    """Run `argv` with its standard output going straight into `partial` (binary-safe: invoke
    would decode it as text); `secret` is its first line of input.

    On their way the bytes are hashed (sha256sum) and, when `check` is given, read by that
    command too (`pg_restore -f /dev/null` reads every block of an archive): the file is
    verified while it arrives instead of read again after. Both report on standard error
    once the stream has ended (`Tapped.of` reads them). The bytes pass through `tee`, which
    fails on a write error (a full disk) where kubectl does not; with pipefail, either
    failing fails the command. `tee -p` keeps writing the file should a tap stop reading."""
    outputs = '"$d/sum" "$d/check"' if check else '"$d/sum"'
    lines = [
        "set -o pipefail; umask 077",
        "d=$(mktemp -d) || exit 1",
        "trap 'rm -rf \"$d\"' EXIT",
        'mkfifo "$d/sum" "$d/check" || exit 1',
        'sha256sum < "$d/sum" > "$d/sum.out" &',
    ]
    if check:
        lines.append(
            f'{{ {shlex.join(check)} < "$d/check" > /dev/null 2> "$d/check.err"; '
            'echo $? > "$d/check.rc"; } &'
        )
    lines += [
        f"{shlex.join(argv)} | tee -p {outputs} > {shlex.quote(str(partial))}",
        "status=$?",
        "wait",
        f'echo "{TAPPED}sha256=$(cut -d" " -f1 "$d/sum.out")" >&2',
    ]
    if check:
        lines += [
            f'echo "{TAPPED}check=$(cat "$d/check.rc")" >&2',
            f'sed "s/^/{TAPPED}check-error=/" "$d/check.err" >&2',
        ]
    lines.append("exit $status")
    extra = {"input": secret + "\n"} if secret is not None else {"in_stream": False}
    return _command.run(c, ["bash", "-c", "\n".join(lines)], hide="both", warn=True, **extra)


TAPPED = "prism-tapped: "  # how stream_out's taps report, on standard error


@dataclass(frozen=True)
class Tapped:
    """What stream_out's taps saw: the sha256 of the bytes, and how `check` ended (None
    when there was no check or it did not report) with its error lines."""

    sha256: str
    check: int | None
    errors: str

    @classmethod
    def of(cls, result: Result) -> Tapped:
        found: dict[str, list[str]] = {}
        for line in (result.stderr or "").splitlines():
            if line.startswith(TAPPED):
                name, _, value = line[len(TAPPED) :].partition("=")
                found.setdefault(name, []).append(value)
        digest = (found.get("sha256") or [""])[-1]
        code = (found.get("check") or [""])[-1]
        return cls(
            sha256=digest if re.fullmatch(r"[0-9a-f]{64}", digest) else "",
            check=int(code) if code.isdigit() else None,
            errors="\n".join(found.get("check-error", [])).strip(),
        )


def stream_in(c: Context, argv: list[str], path: Path, secret: str | None = None) -> Result:
    """Run `argv` with the file on its standard input, after `secret` as a first line."""
    source = f"cat {shlex.quote(str(path))}"
    if secret is None:
        script = f"{source} | {shlex.join(argv)}"
        return _command.run(c, ["sh", "-c", script], hide="both", warn=True, in_stream=False)
    script = f'IFS= read -r line && {{ printf "%s\\n" "$line"; {source}; }} | {shlex.join(argv)}'
    return _command.run(c, ["sh", "-c", script], hide="both", warn=True, input=secret + "\n")


def receive(path: Path, digest: str, then: str, f: str = "$(mktemp)") -> str:
    """Shell (in the pod) that takes exactly the file's bytes from standard input into a
    temporary file "$f" (`f`), checks its sha256, then runs `then`; the file is removed on
    exit."""
    return in_temp_file(
        f'head -c {path.stat().st_size} > "$f" && '
        f'echo "{digest}  $f" | sha256sum -c >/dev/null && {then}',
        f=f,
    )


def in_temp_file(steps: str, f: str = "$(mktemp)") -> str:
    """Shell that runs `steps` with "$f" set to a temporary file (or directory, with
    `f="$(mktemp -d)"`), removed whatever happens."""
    return f'f={f} || exit 1; {steps}; status=$?; rm -rf "$f"; exit $status'


def restore_target(c: Context, file: str) -> tuple[Path, Target, Settings]:
    """What every restore checks first: a local backup file, and a reachable cluster this
    project may change (guide correction 20)."""
    local_only(c)
    path = _files.find(c, file)
    t = _target.require_reachable(c)
    _guard.require_owned(c, t)
    return path, t, _settings.load(c)


def local_only(c: Context) -> None:
    if _command.is_remote(c):
        raise Exit(
            "backups are files on the machine that runs the tasks; run the backup tasks there "
            "without -H",
            code=1,
        )
