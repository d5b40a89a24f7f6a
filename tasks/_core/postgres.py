"""How the tasks talk to Postgres inside its pod: with the client the image ships, on the pod's
loopback, and the password on standard input (never in an argument, where `ps` shows it)."""

from __future__ import annotations

import shlex

# The start of a pod-side script whose first line of standard input is the password.
READ_PASSWORD = "IFS= read -r PGPASSWORD && export PGPASSWORD && "


def connection(port: int, user: str) -> list[str]:
    """Client arguments for the server in the same pod."""
    return ["-h", "127.0.0.1", "-p", str(port), "-U", user]


def psql(port: int, user: str, db: str, *args: str) -> str:
    """A psql command line (no ~/.psqlrc) for the pod-side script."""
    return shlex.join(["psql", "-X", *args, *connection(port, user), "-d", db])
