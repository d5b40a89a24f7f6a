"""A real Helm chart repository on 127.0.0.1, for the observability tests.

Small stand-ins for kube-prometheus-stack and loki-stack (the real names and pinned versions, a
Deployment or two each, no webhooks) are written by hand, packaged and indexed with the pinned
helm, and served by `http.server` on a free loopback port: one directory per repository
(`/prometheus-community/`, `/grafana/`), each with its own index.yaml, so a chart is only found
in the repository it really lives in. helm's own state lives in a temporary home, and so does
the user's repositories.yaml (`ChartRepo.repositories_file`), which the tasks must leave alone.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks._core import sim_binaries as _sim

# The real charts' defaults for the keys the tasks set; the stand-ins read some of them.
PROMETHEUS_VALUES = """\
prometheus:
  prometheusSpec:
    serviceMonitorSelectorNilUsesHelmValues: true
prometheusOperator:
  tls:
    enabled: true
  # The real chart creates webhook configurations and a patch job from these; the stand-in
  # never creates a webhook, whatever they say.
  admissionWebhooks:
    enabled: true
    patch:
      enabled: true
    deployment:
      enabled: false
grafana:
  enabled: true
"""

LOKI_VALUES = """\
loki:
  enabled: true
promtail:
  enabled: true
grafana:
  enabled: false
"""


def _deployment(name: str, component: str, image: str, port: int, condition: str = "") -> str:
    body = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app.kubernetes.io/instance: "{{{{ .Release.Name }}}}", app.kubernetes.io/component: {component}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app.kubernetes.io/instance: "{{{{ .Release.Name }}}}", app.kubernetes.io/component: {component}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/instance: "{{{{ .Release.Name }}}}", app.kubernetes.io/component: {component}}}
    spec:
      containers:
      - name: {component}
        image: {image}
        ports: [{{containerPort: {port}}}]
"""
    return f"{{{{- if {condition} }}}}\n{body}{{{{- end }}}}\n" if condition else body


PROMETHEUS_TEMPLATES = {
    "operator.yaml": _deployment(
        "{{ .Release.Name }}-kube-prometheus-operator",
        "operator",
        "quay.io/prometheus-operator/prometheus-operator:v0.79.2",
        8080,
    ),
    "grafana.yaml": _deployment(
        "{{ .Release.Name }}-grafana",
        "grafana",
        "docker.io/grafana/grafana:11.4.0",
        3000,
        ".Values.grafana.enabled",
    )
    + """\
{{- if .Values.grafana.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-grafana
spec:
  selector: {app.kubernetes.io/instance: "{{ .Release.Name }}", app.kubernetes.io/component: grafana}
  ports: [{port: 80, targetPort: 3000}]
{{- end }}
""",
}

LOKI_TEMPLATES = {
    "loki.yaml": _deployment(
        "{{ .Release.Name }}", "loki", "docker.io/grafana/loki:2.9.3", 3100, ".Values.loki.enabled"
    ),
    "promtail.yaml": _deployment(
        "{{ .Release.Name }}-promtail",
        "promtail",
        "docker.io/grafana/promtail:2.9.3",
        3101,
        ".Values.promtail.enabled",
    ),
    "grafana.yaml": _deployment(
        "{{ .Release.Name }}-grafana",
        "grafana",
        "docker.io/grafana/grafana:8.3.5",
        3000,
        ".Values.grafana.enabled",
    ),
}

# repository -> (chart, version, values, templates); loki-stack 2.10.1 is there for upgrades.
CHARTS: dict[str, list[tuple[str, str, str, dict[str, str]]]] = {
    "prometheus-community": [
        ("kube-prometheus-stack", "67.8.0", PROMETHEUS_VALUES, PROMETHEUS_TEMPLATES),
    ],
    "grafana": [
        ("loki-stack", "2.10.1", LOKI_VALUES, LOKI_TEMPLATES),
        ("loki-stack", "2.10.2", LOKI_VALUES, LOKI_TEMPLATES),
    ],
}


def helm_binary() -> Path:
    binary = _sim.bin_dir() / "helm"
    if not binary.is_file():
        raise RuntimeError(f"{binary} is missing: build it with scripts/build-sim-binaries.sh")
    return binary


def helm_env(home: Path) -> dict[str, str]:
    """helm's config, cache and data in `home`, never the user's."""
    return {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REPOSITORY_CONFIG": str(home / "config" / "repositories.yaml"),
    }


def run_helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def write_chart(
    directory: Path, name: str, version: str, values: str, templates: dict[str, str]
) -> Path:
    chart = directory / f"{name}-{version}"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n"
        f"description: test stand-in for {name} (no webhooks)\n"
    )
    (chart / "values.yaml").write_text(values)
    for filename, text in templates.items():
        (chart / "templates" / filename).write_text(text)
    return chart


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        self.requests.append(self.path)


@dataclass
class ChartRepo:
    url: str
    home: Path
    requests: list[str] = field(default_factory=list)

    def repo(self, name: str) -> str:
        return f"{self.url}/{name}"

    @property
    def repositories_file(self) -> Path:
        """The repositories.yaml of the helm that the tasks run (HELM_REPOSITORY_CONFIG)."""
        return Path(helm_env(self.home / "helm")["HELM_REPOSITORY_CONFIG"])

    @property
    def env(self) -> dict[str, str]:
        """What `inv observe.install` needs to use this repository and the private helm home."""
        return {
            "PRISM_OBSERVE_PROMETHEUS_REPO": self.repo("prometheus-community"),
            "PRISM_OBSERVE_GRAFANA_REPO": self.repo("grafana"),
            **helm_env(self.home / "helm"),
        }


@contextmanager
def serve(home: Path) -> Iterator[ChartRepo]:
    """Build, package, index and serve the charts; stop serving on exit."""
    root = home / "repo"
    root.mkdir(parents=True)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        repo = ChartRepo(f"http://127.0.0.1:{server.server_address[1]}", home, requests)
        env = helm_env(home / "helm")
        for name, charts in CHARTS.items():
            (root / name).mkdir()
            for chart, version, values, templates in charts:
                source = write_chart(home / "src", chart, version, values, templates)
                run_helm(env, "lint", str(source))
                run_helm(env, "package", str(source), "--destination", str(root / name))
            run_helm(env, "repo", "index", str(root / name), "--url", repo.repo(name))
        yield repo
    finally:
        server.shutdown()
        server.server_close()
