"""The configuration layer: defaults -> invoke.yaml -> environment/.env -> flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Context, Exit
from support.cli import make_context

from tasks._core import settings as _settings


def context(**overrides: object) -> Context:
    return make_context(**overrides)


def test_default_environment_needs_no_switch() -> None:
    s = _settings.load(context())
    assert (s.env, s.cluster_name, s.overlay) == ("local", "prism-local", "local")
    assert [s.cluster_int(k) for k in ("http_port", "https_port", "grpc_port", "api_port")] == [
        8080,
        8443,
        50051,
        6443,
    ]


def test_prism_env_switches_name_ports_and_overlay_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_ENV", "staging")
    s = _settings.load(context())
    assert (s.cluster_name, s.overlay, s.cluster_int("api_port")) == (
        "prism-staging",
        "staging",
        6643,
    )
    assert (s.cluster_int("servers"), s.cluster_int("agents")) == (1, 2)


def test_environments_never_share_a_host_port() -> None:
    ports = [
        port
        for p in _settings.ENVIRONMENTS.values()
        for port in (p.http_port, p.https_port, p.grpc_port, p.api_port)
    ]
    assert len(ports) == len(set(ports))


def test_unknown_environment_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_ENV", "qa")
    with pytest.raises(Exit, match="unknown environment PRISM_ENV='qa'; choose one of: local"):
        _settings.load(context())


def test_environment_overrides_invoke_yaml_values() -> None:
    c = context(cluster={"wait_timeout": 42})
    assert _settings.load(c).cluster.wait_timeout == 42


def test_environment_variable_wins_over_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_WAIT_TIMEOUT", "7")
    c = context(cluster={"wait_timeout": 42})
    assert _settings.load(c).cluster.wait_timeout == 7


def test_dotenv_fills_in_but_never_overrides_the_real_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / "test.env"
    dotenv.write_text("PRISM_CLUSTER_AGENTS=5\nPRISM_CLUSTER_SERVERS=3\n")
    monkeypatch.setenv("PRISM_CLUSTER_SERVERS", "2")
    s = _settings.load(context())
    assert (s.cluster_int("agents"), s.cluster_int("servers")) == (5, 2)


def test_malformed_dotenv_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "test.env").write_text("GOOD=1\nthis line is wrong\n")
    with pytest.raises(Exit, match=r"test.env:2: cannot parse 'this line is wrong'"):
        _settings.load(context())


def test_environment_value_of_wrong_type_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_WAIT_TIMEOUT", "soon")
    with pytest.raises(Exit, match="PRISM_CLUSTER_WAIT_TIMEOUT='soon' is not a whole number"):
        _settings.load(context())


def test_config_value_of_wrong_type_is_rejected() -> None:
    with pytest.raises(Exit, match=r"config cluster.agents is 'two' \(str\); expected int"):
        _settings.load(context(cluster={"agents": "two"}))


def test_unknown_config_key_is_rejected() -> None:
    with pytest.raises(Exit, match="unknown key cluster.agnets"):
        _settings.load(context(cluster={"agnets": 2}))


def test_boolean_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_settings.SCHEMA, "probe", {"flag": False})
    monkeypatch.setenv("PRISM_PROBE_FLAG", "yes")
    assert _settings.load(context()).probe.flag is True
    monkeypatch.setenv("PRISM_PROBE_FLAG", "maybe")
    with pytest.raises(Exit, match="not a boolean"):
        _settings.load(context())


# --- a list of names: a YAML list in invoke.yaml, or one comma-separated string ----------------


def test_a_list_setting_takes_a_yaml_list() -> None:
    s = _settings.load(context(cluster={"allowed_contexts": [" staging ", "eks-dev"]}))
    assert s.cluster.allowed_contexts == ["staging", "eks-dev"]


def test_a_list_setting_takes_a_comma_separated_string_in_yaml_too() -> None:
    s = _settings.load(context(cluster={"allowed_contexts": "staging, eks-dev,"}))
    assert s.cluster.allowed_contexts == ["staging", "eks-dev"]


def test_a_list_setting_from_the_environment_is_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_ALLOWED_CONTEXTS", "staging,,eks-dev ")
    s = _settings.load(context(cluster={"allowed_contexts": ["ignored"]}))
    assert s.cluster.allowed_contexts == ["staging", "eks-dev"]


def test_a_list_setting_defaults_to_empty() -> None:
    assert _settings.load(context()).cluster.allowed_contexts == []


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["staging", 3], r"config cluster.allowed_contexts\[1\] is 3 \(int\); expected a non-empty str"),
        (["staging", ""], r"config cluster.allowed_contexts\[1\] is '' \(str\); expected a non-empty"),
        ([["staging"]], r"config cluster.allowed_contexts\[0\] is \['staging'\] \(list\)"),
        ({"staging": True}, r"config cluster.allowed_contexts is \{'staging': True\} \(dict\); "
                            "expected a list of names or one comma-separated str"),
    ],
    ids=["number", "empty", "nested", "mapping"],
)  # fmt: skip
def test_a_list_setting_with_something_else_than_names_is_refused(value: object, says: str) -> None:
    with pytest.raises(Exit, match=says):
        _settings.load(context(cluster={"allowed_contexts": value}))


# --- values checked where they enter -----------------------------------------------------------


@pytest.mark.parametrize(
    "prefix", ["ghcr.io/acme/prism", "registry.example.com:5000", "localhost:5000/a_b/c-d", "acme"]
)
def test_a_registry_prefix_is_accepted(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", prefix)
    assert _settings.load(context()).images.registry == prefix


def refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """The one line settings refuse the environment variable `name`=`value` with."""
    monkeypatch.setenv(name, value)
    with pytest.raises(Exit) as caught:
        _settings.load(context())
    return str(caught.value.message)


@pytest.mark.parametrize(
    "prefix",
    ["https://ghcr.io/acme", "ghcr.io/acme/", "ghcr.io/acme/prism:v1", "ghcr.io/Acme", "a b"],
)
def test_what_is_not_a_registry_prefix_is_refused(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    assert refusal(monkeypatch, "PRISM_IMAGES_REGISTRY", prefix) == (
        f"PRISM_IMAGES_REGISTRY (images.registry)={prefix!r} is not a registry prefix: give "
        "host[:port]/path without scheme, tag or trailing slash (e.g. ghcr.io/acme/prism)"
    )


def test_two_registries_for_the_images_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "ghcr.io/acme/prism")
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    with pytest.raises(Exit, match="both say where the cluster pulls the Prism images from"):
        _settings.load(context())


def test_an_unknown_proxy_service_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert refusal(monkeypatch, "PRISM_CLUSTER_PROXY_SERVICE_TYPE", "loadbalancer") == (
        "PRISM_CLUSTER_PROXY_SERVICE_TYPE (cluster.proxy_service_type)='loadbalancer': choose "
        "one of LoadBalancer, NodePort, ClusterIP"
    )


@pytest.mark.parametrize("level", ["-1", "10"])
def test_a_compression_level_pg_dump_does_not_have_is_refused(
    monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    assert refusal(monkeypatch, "PRISM_BACKUP_POSTGRES_COMPRESSION", level) == (
        f"PRISM_BACKUP_POSTGRES_COMPRESSION (backup.postgres_compression)={level} is not a "
        "pg_dump compression level; use 0 to 9"
    )


def test_secret_comes_from_dotenv_and_missing_secret_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "test.env").write_text("PRISM_POSTGRES_PASSWORD=s3cret\n")
    s = _settings.load(context())
    assert s.secret("PRISM_POSTGRES_PASSWORD") == "s3cret"
    with pytest.raises(Exit, match="PRISM_MINIO_ROOT_PASSWORD is not set; copy .env.example"):
        s.secret("PRISM_MINIO_ROOT_PASSWORD")


def test_every_key_documented_in_env_example() -> None:
    text = (_settings.PROJECT_ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ") for line in text.splitlines() if "=" in line}
    expected = {
        _settings.env_var(sec, key) for sec, keys in _settings.SCHEMA.items() for key in keys
    }
    assert expected <= documented, sorted(expected - documented)


def count_merges(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    merges: list[object] = []
    real = _settings._merge

    def counted(c: Context) -> _settings.Settings:
        merges.append(c)
        return real(c)

    monkeypatch.setattr(_settings, "_merge", counted)
    return merges


def test_a_task_merges_the_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import deploy

    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_USER", "POSTGRES_PASSWORD",
                "POSTGRES_DB", "S3_ACCESS_KEY", "S3_SECRET_KEY"):  # fmt: skip
        monkeypatch.setenv(f"PRISM_{var}", "x")
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    merges = count_merges(monkeypatch)
    # a dry deploy reads settings for the overlay, the Secrets, the target and the plan
    deploy.all_(context(run={"dry": True}))
    assert len(merges) == 1


def test_a_changed_environment_is_merged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    merges = count_merges(monkeypatch)
    c = context()
    assert _settings.load(c) is _settings.load(c)
    monkeypatch.setenv("PRISM_ENV", "dev")
    assert _settings.load(c).env == "dev"
    assert len(merges) == 2
