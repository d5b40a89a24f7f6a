"""`scripts/test` needs a loopback-only network namespace: where none can be made it stops at
once, before minutes of setup, saying why and what to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.cli import ROOT


def test_scripts_test_without_a_namespace_stops_first_and_says_what_to_do(tmp_path: Path):
    # An `unshare` that fails as the real one does where namespaces are not allowed.
    fake = tmp_path / "unshare"
    fake.write_text(
        '#!/bin/sh\necho "unshare: unshare failed: Operation not permitted" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        [str(ROOT / "scripts" / "test")],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # not even setup ran
    first, *advice = result.stderr.splitlines()
    assert first == (
        "scripts/test: cannot create a loopback-only network namespace: "
        "unshare: unshare failed: Operation not permitted"
    )
    if os.geteuid() == 0:
        assert advice == [
            "  root needs CAP_SYS_ADMIN for `unshare --net` "
            "(in a container: run it with --privileged or --cap-add SYS_ADMIN)"
        ]
    else:
        assert "sudo scripts/test" in advice[0] and "unprivileged user namespaces" in advice[0]
