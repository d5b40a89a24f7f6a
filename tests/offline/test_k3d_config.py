"""The generated k3d config files, checked against the JSON schema k3d itself ships.

The schema (and k3d's cluster-name rule) come from the k3d Go module at a pinned version, which
scripts/setup fetches (scripts/fetch-k3d-schema.sh); without them these tests fail.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from support.fakes import shell

from tasks._core import settings as _settings
from tasks._core import target as _target
from tasks._providers import k3d as _k3d

K3D_VERSION = "v5.6.3"


@pytest.fixture(scope="session")
def k3d_source() -> Path:
    """k3d's schema and cluster-name source at the pinned version, as scripts/setup fetched
    them (outside the test namespace, which reaches no registry)."""
    home = Path(os.environ.get("PRISM_SIM_HOME", Path.home() / ".cache" / "prism-sim"))
    found = home / f"k3d-{K3D_VERSION}"
    if not (found / "schema.json").is_file():
        pytest.fail(f"{found} is missing: run scripts/setup (scripts/fetch-k3d-schema.sh)")
    return found


def k3d_hostname_regexp(k3d_source: Path) -> str:
    source = (k3d_source / "clusterName.go").read_text()
    found = re.search(r"HostnameRegexp = regexp.MustCompile\(`([^`]+)`\)", source)
    assert found is not None, "k3d's HostnameRegexp moved"
    return found.group(1)


@pytest.fixture(scope="session")
def validator(k3d_source: Path) -> jsonschema.protocols.Validator:
    schema = json.loads((k3d_source / "schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    # jsonschema checks `format: hostname` only with the optional fqdn package; check it with
    # k3d's own expression instead, which is what k3d applies to the name
    checker = jsonschema.FormatChecker()
    hostname = re.compile(k3d_hostname_regexp(k3d_source))
    checker.checks("hostname")(
        lambda value: not isinstance(value, str) or bool(hostname.match(value))
    )
    return cls(schema, format_checker=checker)


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The config `cluster.create` would write, for an environment and PRISM_* variables."""

    def render(env: str = "local", **environ: str) -> dict[str, Any]:
        monkeypatch.setenv("PRISM_ENV", env)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        s = _settings.load(shell({}))
        kubeconfig = environ.get("PRISM_CLUSTER_KUBECONFIG", "")
        t = _target.Target("k3d", s.cluster_name, f"k3d-{s.cluster_name}", kubeconfig, "test")
        return _k3d.config(s, t)

    return render


def assert_valid(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> None:
    # validate what k3d reads: the YAML text, parsed back
    parsed = yaml.safe_load(yaml.safe_dump(document, sort_keys=False))
    errors = sorted(validator.iter_errors(parsed), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("env", list(_settings.ENVIRONMENTS))
def test_every_environment_config_validates_against_k3d_schema(
    validator: jsonschema.protocols.Validator, generated, env: str
) -> None:
    assert_valid(validator, generated(env))


@pytest.mark.parametrize("env", list(_settings.ENVIRONMENTS))
def test_every_environment_with_registry_and_tuning_validates(
    validator: jsonschema.protocols.Validator, generated, env: str
) -> None:
    document = generated(
        env,
        PRISM_CLUSTER_REGISTRY="true",
        PRISM_CLUSTER_TUNING="true",
        PRISM_CLUSTER_KUBECONFIG="/tmp/prism-kubeconfig",
        PRISM_CLUSTER_DISABLE="",
    )
    assert_valid(validator, document)
    assert document["registries"] == {"use": ["k3d-prism-registry:5555"]}


def test_schema_is_strict_enough_to_mean_something(
    validator: jsonschema.protocols.Validator, generated
) -> None:
    document = generated()
    document["ports"][0]["hostPort"] = "8080"  # not a k3d field
    assert not validator.is_valid(document)


def test_local_config_is_the_guides_quick_start(tmp_path: Path, generated) -> None:
    document = generated()
    storage = tmp_path / "data" / "local" / "local-storage"
    assert document == {
        "apiVersion": "k3d.io/v1alpha5",
        "kind": "Simple",
        "metadata": {"name": "prism-local"},
        "servers": 1,
        "agents": 2,
        "kubeAPI": {"hostIP": "127.0.0.1", "hostPort": "6443"},
        "ports": [
            {"port": "8080:80", "nodeFilters": ["loadbalancer"]},
            {"port": "8443:443", "nodeFilters": ["loadbalancer"]},
            {"port": "50051:50051", "nodeFilters": ["loadbalancer"]},
        ],
        "volumes": [
            {
                "volume": f"{storage}:/var/lib/rancher/k3s/storage",
                "nodeFilters": ["server:*", "agent:*"],
            }
        ],
        "options": {
            "k3d": {"wait": True, "timeout": "180s"},
            "kubeconfig": {"updateDefaultKubeconfig": True, "switchCurrentContext": False},
            "k3s": {"extraArgs": [{"arg": "--disable=traefik", "nodeFilters": ["server:*"]}]},
        },
    }


@pytest.mark.parametrize(
    ("env", "servers", "agents", "ports", "api"),
    [
        ("dev", 1, 1, ["8180:80", "8543:443", "50151:50051"], "6543"),
        ("staging", 1, 2, ["8280:80", "8643:443", "50251:50051"], "6643"),
        ("prod", 3, 3, ["8380:80", "8743:443", "50351:50051"], "6743"),
        ("ci", 1, 2, ["8480:80", "8843:443", "50451:50051"], "6843"),
    ],
)
def test_each_environment_has_its_own_name_nodes_and_ports(
    generated, env: str, servers: int, agents: int, ports: list[str], api: str
) -> None:
    document = generated(env)
    assert document["metadata"]["name"] == f"prism-{env}"
    assert (document["servers"], document["agents"]) == (servers, agents)
    assert [p["port"] for p in document["ports"]] == ports
    assert document["kubeAPI"]["hostPort"] == api
    assert document["volumes"][0]["volume"].split(":")[0].endswith(f"/{env}/local-storage")


def test_custom_ports_and_counts_come_from_configuration(generated) -> None:
    document = generated(
        "dev",
        PRISM_CLUSTER_HTTP_PORT="18080",
        PRISM_CLUSTER_HTTPS_PORT="18443",
        PRISM_CLUSTER_GRPC_PORT="15051",
        PRISM_CLUSTER_API_PORT="16443",
        PRISM_CLUSTER_AGENTS="0",
        PRISM_CLUSTER_SERVERS="2",
    )
    assert [p["port"] for p in document["ports"]] == ["18080:80", "18443:443", "15051:50051"]
    assert document["kubeAPI"] == {"hostIP": "127.0.0.1", "hostPort": "16443"}
    # 0 means "the environment's count": dev has one agent
    assert (document["servers"], document["agents"]) == (2, 1)


def test_tuning_raises_api_server_limits_on_every_server(generated) -> None:
    args = generated("prod", PRISM_CLUSTER_TUNING="true")["options"]["k3s"]["extraArgs"]
    assert args == [
        {"arg": "--disable=traefik", "nodeFilters": ["server:*"]},
        {
            "arg": "--kube-apiserver-arg=max-requests-inflight=400",
            "nodeFilters": ["server:*"],
        },
        {
            "arg": "--kube-apiserver-arg=max-mutating-requests-inflight=200",
            "nodeFilters": ["server:*"],
        },
    ]


def test_custom_kubeconfig_leaves_the_default_kubeconfig_alone(generated) -> None:
    options = generated(PRISM_CLUSTER_KUBECONFIG="/tmp/k")["options"]["kubeconfig"]
    assert options == {"updateDefaultKubeconfig": False, "switchCurrentContext": False}


def test_schema_checks_the_cluster_name_as_a_hostname(
    validator: jsonschema.protocols.Validator, generated
) -> None:
    document = generated()
    document["metadata"]["name"] = "prism_local"
    assert not validator.is_valid(document)


def test_name_rule_is_k3ds_own(k3d_source: Path) -> None:
    assert k3d_hostname_regexp(k3d_source) == _k3d.HOSTNAME.pattern
    defaults = (k3d_source / "defaults.go").read_text()
    assert f"DefaultClusterNameMaxLength = {_k3d.NAME_MAX_LENGTH}\n" in defaults


def test_config_file_is_private_and_written_whole(tmp_path: Path) -> None:
    c = shell({})
    s = _settings.load(c)
    t = _target.Target("k3d", "prism-local", "k3d-prism-local", "", "test")
    path = _k3d.write_config(c, s, t)
    assert path == tmp_path / "data" / "local" / "k3d-prism-local.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == _k3d.config(s, t)
    assert _k3d.storage_dir(s).is_dir()
    # no temporary file is left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "k3d-prism-local.yaml",
        "local-storage",
    ]


def test_dry_run_shows_the_config_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = shell({}, run={"dry": True})
    s = _settings.load(c)
    t = _target.Target("k3d", "prism-local", "k3d-prism-local", "", "test")
    _k3d.write_config(c, s, t)
    assert "apiVersion: k3d.io/v1alpha5" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()
