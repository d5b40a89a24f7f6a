"""The Prism local-Kubernetes task collection: `inv --list` shows every namespace.

This module only assembles; each namespace module carries its own tasks and defaults.
"""

from invoke import Collection

from . import backends, backup, chaos, cluster, deploy, images, ingress, observe
from ._core.settings import configure
from .doctor import doctor

ns = Collection()
for module in (cluster, images, ingress, backends, deploy, observe, backup, chaos):
    ns.add_collection(module.ns)
ns.add_task(doctor)

configure(
    ns,
    "prism",
    {
        # dev / staging / prod / ci / local: changes cluster name, ports and overlay together.
        "env": "local",
        # Data that outlives a cluster (the k3d storage volume, backups): ERRATA 9.
        "data_dir": "~/.local/share/prism",
    },
)
