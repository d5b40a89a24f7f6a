"""Test support: the real `inv` runner, the simulated cluster, sshd, database servers, a chart
repository on loopback, and the fakes for commands that cannot run here (docker, k3d)."""
