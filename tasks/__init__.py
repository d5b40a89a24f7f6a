"""The Prism local-Kubernetes task collection: `inv --list` shows every namespace.

This package is the command line: one module per namespace, each thin (flags -> engine call ->
output), ending with its `ns` and its configuration defaults. The engine lives in the private
subpackages below, whose names are the layers; imports point down only
(tests/offline/test_architecture.py keeps it so):

    _cli        the `inv` / `prism` programs (invoke's, or fabric's with -H)
    _deploy     render an overlay into objects; plan and apply them step by step
    _backup     backup files, streams into pods, Postgres, Redis
    _observe    troubleshooting checks, Helm charts
    _chaos      chaos drills: watch, disrupt, restore, report
    _providers  the cluster providers (k3d, kwok) behind one Protocol
    _kube       the Kubernetes client, readiness, watches
    _remote     SSH hosts and the tunnel to their API servers
    _core       settings, running commands, the target cluster and its guard

Namespace modules import the engine inside their task bodies, never at the top: `inv --list`
loads only this package's CLI modules and stays as fast as invoke listing an empty collection.

Comments cite "guide correction N": item N of docs/guide-corrections.md, where this project
departs from the guide (memo-035) and why.
"""

from invoke import Collection

from . import backends, backup, chaos, cluster, deploy, images, ingress, observe
from ._core.command import InterruptibleLocal
from ._core.output import styled
from ._core.settings import configure
from .doctor import doctor

ns = Collection()
for module in (cluster, images, ingress, backends, deploy, observe, backup, chaos):
    ns.add_collection(module.ns)
ns.add_task(doctor)
ns.configure(
    {
        "runners": {"local": InterruptibleLocal},
        # the commands --dry and echo print: invoke's bold white only on a terminal
        "run": {"echo_format": "\033[1;37m{command}\033[0m" if styled() else "{command}"},
    }
)

configure(
    ns,
    "prism",
    {
        # dev / staging / prod / ci / local: changes cluster name, ports and overlay together.
        "env": "local",
        # Data that outlives a cluster (the k3d storage volume, backups): guide correction 9.
        "data_dir": "~/.local/share/prism",
    },
)
