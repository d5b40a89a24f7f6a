"""Prism images: the list the guide builds and loads into the cluster."""

from __future__ import annotations

from invoke import Collection, task

from . import _settings


def image_names(c) -> list[str]:
    """The configured Prism images, `name:tag`."""
    s = _settings.load(c)
    tag = s.images.tag
    return [f"{name}:{tag}" for name in s.images.names.split(",") if name]


@task(name="list", default=True)
def list_(c):
    """List the Prism images this project builds and loads."""
    print("\n".join(image_names(c)))


ns = Collection("images", list_)
_settings.configure(
    ns,
    "images",
    {
        # The guide's six images ("Building and Loading Images"), comma-separated.
        "names": "prism-admin,prism-proxy,keyvalue-runner,consumer-runner,producer-runner,mailbox-runner",
        "tag": "latest",
    },
)
