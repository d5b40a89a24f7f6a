"""`inv -H a,b ...`: one child `inv -H <host> ...` per host, its output labelled `[host]`,
then one summary line per host. With `--parallel` the hosts run at once; without, one after
another. Either way a failing host does not stop or hide the others: the summary says which
failed and why, and the exit status is the first failure's.

A child process per host keeps each host's run exactly what `inv -H host ...` does alone
(its own settings, connection and Ctrl-C handling) while the lines stay apart."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from invoke import Program
from invoke.parser import Parser

PARALLEL = "--parallel"


@dataclass
class Plan:
    hosts: list[str]
    core: list[str]  # the core flags, without -H and --parallel
    rest: list[str]  # the task names and their flags
    parallel: bool


def plan(args: Sequence[str], initial: Program) -> Plan:
    """Split `inv` arguments (without the program name) into -H's hosts, the other core flags
    and the tasks; `--parallel` is only ever read here."""
    args = list(args)
    parallel = False
    if PARALLEL in args:
        position = args.index(PARALLEL)
        parser = Parser(initial=initial.initial_context, ignore_unknown=True)
        before = parser.parse_argv(args[:position]).unparsed
        if not before:  # among the core flags, not a task's
            parallel = True
            del args[position]
    parsed = Parser(initial=initial.initial_context, ignore_unknown=True).parse_argv(args)
    rest = list(parsed.unparsed)
    core_tokens = args[: len(args) - len(rest)]
    hosts_value = parsed[0].args["hosts"].value or ""
    hosts = list(dict.fromkeys(h.strip() for h in hosts_value.split(",") if h.strip()))
    core: list[str] = []
    skip = False
    for token in core_tokens:
        if skip:
            skip = False
        elif token in ("-H", "--hosts"):
            skip = True
        elif not token.startswith(("--hosts=", "-H")):
            core.append(token)
    return Plan(hosts, core, rest, parallel)


@dataclass
class Outcome:
    host: str
    code: int = 0
    seconds: float = 0.0
    last_error: str = ""


def fan_out(program: str, p: Plan) -> int:
    """Run every host's child, label its lines, print the summary; the exit status."""
    from .._core import output as _output

    lock = threading.Lock()
    outcomes = {host: Outcome(host) for host in p.hosts}
    children: dict[str, subprocess.Popen[str]] = {}

    def pump(host: str, stream: IO[str], out: IO[str], errors: list[str] | None) -> None:
        label = f"[{host}] "
        for line in stream:
            with lock:  # echoed commands carry the label already
                out.write(line if line.startswith(label) else label + line)
                out.flush()
            if errors is not None and line.strip():
                errors.append(line.strip())

    def run_host(host: str) -> None:
        started = time.monotonic()
        child = subprocess.Popen(
            [program, "-H", host, *p.core, *p.rest],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        children[host] = child
        errors: list[str] = []
        assert child.stdout is not None and child.stderr is not None
        readers = [
            threading.Thread(target=pump, args=(host, child.stdout, sys.stdout, None)),
            threading.Thread(target=pump, args=(host, child.stderr, sys.stderr, errors)),
        ]
        for reader in readers:
            reader.start()
        child.wait()
        for reader in readers:
            reader.join()
        outcome = outcomes[host]
        outcome.code, outcome.seconds = child.returncode, time.monotonic() - started
        outcome.last_error = errors[-1] if errors else ""

    interrupted = False
    try:
        if p.parallel:
            threads = [threading.Thread(target=run_host, args=(h,), daemon=True) for h in p.hosts]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        else:
            for host in p.hosts:
                run_host(host)
    except KeyboardInterrupt:
        interrupted = True
        for child in children.values():  # a terminal's Ctrl-C reached them already
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children.values():
            child.wait()
        time.sleep(0.1)  # let the readers drain

    failed = [o for o in outcomes.values() if o.code != 0]
    ran = [h for h in p.hosts if h in children]
    mode = "at once" if p.parallel else "one after another"
    with lock:
        print(f"\nhosts ({mode}): {len(ran) - len(failed)} of {len(p.hosts)} succeeded", flush=True)
        for host in p.hosts:
            o = outcomes[host]
            if host not in children:
                _output.line(None, f"{host}: not run (interrupted)")
            elif o.code == 0:
                _output.line(True, f"{host}: done in {o.seconds:.1f}s")
            else:
                why = f": {o.last_error}" if o.last_error else ""
                _output.line(False, f"{host}: exit {o.code} after {o.seconds:.1f}s{why}")
    if interrupted:
        return 130
    return failed[0].code if failed else 0
