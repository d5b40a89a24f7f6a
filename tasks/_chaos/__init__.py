"""Chaos drills: break one thing on the project's own cluster on purpose, watch what the
cluster does about it, put it back, and report how long the stack took to be whole again.

    spec.py      durations (`60`, `60s`, `1m30s`) and the scenario file of `chaos.run`
    live.py      watches of pods, nodes, Deployments and StatefulSets in background threads,
                 which reconnect when the API server goes away (and record that they did)
    report.py    what a drill saw: the timeline, the workloads that lost readiness and when
                 they were Ready again, the verdict; the recovery table and its JSON
    undo.py      what puts the cluster back, run on the normal path and on Ctrl-C
    nodes.py     node-down (KWOK's lease taken / the k3d node container stopped) and drain
                 (cordon, evictions through the Eviction API, uncordon)
    backends.py  backend-outage: a backend's StatefulSet scaled to zero and back
    control.py   api-restart: the control plane stopped and started again
    drills.py    the part every drill shares: watch, wait until whole, judge

Every drill pushes its undo before it breaks anything, so that Ctrl-C at any moment restores
what was changed (guide correction 20's guard is the caller's: tasks/chaos.py).
"""
