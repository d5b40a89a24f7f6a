"""Bad input to the chaos drills, as a user types it: one line on stderr, a non-zero exit, no
traceback, and no command run (every tool on PATH is a stub that records being called), so no
cluster is touched. `inv --help` documents every flag."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.cli import INV, ROOT, inv

from offline.test_bad_input import stubs  # noqa: F401  (fixture)

SCENARIOS = {
    "unknown-drill.yaml": "drills:\n  - node-dwn: {node: a}\n",
    "unknown-key.yaml": "drills:\n  - backend-outage: {backend: redis, fr: 30s}\n",
    "not-yaml.yaml": 'drills: [{drain: {node: "a}]\n',
}

CASES = [
    ("node-down-neither", ["chaos.node-down"], "name the node to take down (--node NAME) or pass --random, not both"),
    ("node-down-both", ["chaos.node-down", "--node", "a", "--random"], "or pass --random, not both"),
    ("node-down-for-not-a-duration", ["chaos.node-down", "--node", "a", "--for", "5q"], "--for '5q' is not a duration; write it like 60, 60s, 2m or 1m30s"),
    ("node-down-for-zero", ["chaos.node-down", "--random", "--for", "0"], "--for '0' must be between 1 and 86400 seconds"),
    ("node-down-timeout", ["chaos.node-down", "--random", "--timeout", "abc"], "--timeout 'abc' is not a whole number of seconds"),
    ("drain-without-node", ["chaos.drain"], "'chaos.drain' did not receive required positional arguments: 'node'"),
    ("drain-timeout", ["chaos.drain", "--node", "a", "--timeout", "0x"], "--timeout '0x' is not a whole number"),
    ("outage-for", ["chaos.backend-outage", "--backend", "redis", "--for", "1.5m"], "--for '1.5m' is not a duration"),
    ("outage-without-backend", ["chaos.backend-outage"], "did not receive required positional arguments: 'backend'"),
    ("api-restart-for-negative", ["chaos.api-restart", "--for=-3"], "--for '-3' is not a duration"),
    ("run-missing-scenario", ["chaos.run", "--scenario", "{dir}/nope.yaml"], "nope.yaml: no such file"),
    ("run-unknown-drill", ["chaos.run", "--scenario", "{dir}/unknown-drill.yaml"], "drills[0]: unknown drill 'node-dwn' (did you mean node-down?)"),
    ("run-unknown-key", ["chaos.run", "--scenario", "{dir}/unknown-key.yaml"], "drills[0] (backend-outage): unknown key 'fr' (did you mean for?); backend-outage takes: backend, for, timeout"),
    ("run-not-yaml", ["chaos.run", "--scenario", "{dir}/not-yaml.yaml"], "is not YAML: found unexpected end of stream (line 2)"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_chaos_input_is_one_line_and_touches_nothing(
    args: list[str],
    says: str,
    tmp_path: Path,
    stubs: tuple[Path, Path],  # noqa: F811
) -> None:
    bin_dir, log = stubs
    for name, text in SCENARIOS.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [INV, *(a.format(dir=tmp_path) for a in args)],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PRISM_CLUSTER_PROVIDER": "kwok"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    called = log.read_text().splitlines() if log.exists() else []
    assert called == [], f"commands ran: {called}"


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("node-down", ["--node", "--random", "--for", "--timeout", "--json"]),
        ("drain", ["--node", "--timeout", "--json"]),
        ("backend-outage", ["--backend", "--for", "--timeout", "--json"]),
        ("api-restart", ["--for", "--timeout", "--json"]),
        ("run", ["--scenario", "--json"]),
    ],
)
def test_every_drill_flag_is_documented(name: str, flags: list[str]) -> None:
    result = inv("--help", f"chaos.{name}")
    assert result.returncode == 0, result.stderr
    options = result.stdout.split("Options:", 1)[1]
    for flag in flags:
        assert flag in options, flag
    assert options.count("\n  -") == len(flags)  # no flag more than these, each with its help
