"""Deploy the Prism stack from manifests/ (kustomize overlays), step by step."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Exit, task

from . import _command, _settings

MANIFESTS = _settings.PROJECT_ROOT / "manifests"


def overlay_dir(c, overlay: str | None = None) -> Path:
    s = _settings.load(c)
    name = overlay or s.overlay
    path = MANIFESTS / "overlays" / name
    if not path.is_dir():
        known = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
        raise Exit(f"unknown overlay {name!r}; choose one of: {', '.join(known)}", code=1)
    return path


@task(
    help={
        "overlay": "Overlay under manifests/overlays (default: the environment's).",
        "output": "Write the YAML to this file instead of standard output.",
    }
)
def render(c, overlay=None, output=None):
    """Render the final YAML of an overlay."""
    path = overlay_dir(c, overlay)
    result = _command.run(c, ["kubectl", "kustomize", str(path)], dry=False, hide=True)
    if output:
        Path(output).write_text(result.stdout)
        print(f"wrote {output}")
    else:
        print(result.stdout, end="")


ns = Collection("deploy", render)
_settings.configure(
    ns,
    "deploy",
    {
        "overlay": "",  # empty: the environment's overlay
        "timeout": 300,  # seconds one step may wait for readiness
    },
)
