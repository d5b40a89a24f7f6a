"""chaos.backend-outage asks the backend's own check from deploy.verify (here Redis PING, a real
Redis playing the pod through a real exec) before, during and after the outage: the report says
when it failed and when it answered again."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from support.dbservers import Postgres, Redis
from support.sim import SimCluster

from databases.test_verify import databases, stack  # noqa: F401  (fixtures)

pytestmark = pytest.mark.cluster


def outage(stack: SimCluster, redis_port: int) -> tuple[dict[str, Any], str]:  # noqa: F811
    result = stack.inv(
        "chaos.backend-outage", "--backend", "redis", "--for", "6", "--json",
        PRISM_BACKUP_REDIS_PORT=str(redis_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (drill,) = json.loads(result.stdout)["drills"]
    return drill, result.stderr


def test_the_backends_own_check_fails_during_the_outage_and_answers_after(
    stack: SimCluster,  # noqa: F811
    databases: tuple[Postgres, Redis],  # noqa: F811
) -> None:
    _, redis = databases
    drill, progress = outage(stack, redis.port)
    assert "redis PING: answered PONG (asked again during and after the outage)" in progress
    assert "redis PING fails: " in progress  # redis-0 is gone: the exec finds no pod
    assert "redis PING answers again" in progress
    (note,) = [n for n in drill["notes"] if n.startswith("redis PING")]
    assert re.fullmatch(
        r"redis PING \(deploy\.verify's check\) failed from \+\d+\.\ds; "
        r"answered again at \+\d+\.\ds, \d+\.\ds after the restore",
        note,
    ), note
    failed, back = (float(x) for x in re.findall(r"\+(\d+\.\d)s", note))
    assert failed < drill["restored_after_seconds"] <= back
    assert drill["time_to_whole_seconds"] >= back  # whole only once Redis answers again


def test_a_check_that_fails_before_the_outage_is_not_followed(
    stack: SimCluster,  # noqa: F811
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    drill, progress = outage(stack, closed)
    assert "redis PING fails before the outage already" in progress
    assert "; not followed" in progress
    assert not [n for n in drill["notes"] if n.startswith("redis PING")]
