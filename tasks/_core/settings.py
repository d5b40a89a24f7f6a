"""One configuration layer: code defaults -> invoke.yaml -> environment (.env) -> flags.

Each namespace module registers its defaults with `configure()`; `load(c)` checks the
merged values, applies `PRISM_*` environment variables (the real environment wins over
`.env`) and resolves the selected environment profile (`PRISM_ENV`).
"""

from __future__ import annotations

import functools
import io
import os
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from invoke import Collection, Context, Exit

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# section -> key -> default. Filled by configure(); the defaults' types are the schema.
SCHEMA: dict[str, dict[str, Any]] = {}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Profile(NamedTuple):
    """What one environment of the guide (dev / staging / prod ...) changes together."""

    cluster: str
    overlay: str
    servers: int
    agents: int
    http_port: int
    https_port: int
    grpc_port: int
    api_port: int
    image_tag: str  # the Prism images' tag (images.tag) unless configured


# The Prism release the staging, prod and ci overlays pin their Prism images to
# (manifests/components/pinned-images; tests/offline/test_manifests_render.py keeps the two
# equal). local and dev keep the guide's `latest`, imported into the nodes.
PINNED_IMAGE_TAG = "0.1.0"

# The guide's cluster is `local`; its multi-cluster section adds dev, staging and prod.
# guide correction 8: every environment gets its own host ports so that clusters can coexist.
ENVIRONMENTS: dict[str, Profile] = {
    "local": Profile("prism-local", "local", 1, 2, 8080, 8443, 50051, 6443, "latest"),
    "dev": Profile("prism-dev", "dev", 1, 1, 8180, 8543, 50151, 6543, "latest"),
    "staging": Profile("prism-staging", "staging", 1, 2, 8280, 8643, 50251, 6643, PINNED_IMAGE_TAG),
    "prod": Profile("prism-prod", "prod", 3, 3, 8380, 8743, 50351, 6743, PINNED_IMAGE_TAG),
    "ci": Profile("prism-ci", "ci", 1, 2, 8480, 8843, 50451, 6843, PINNED_IMAGE_TAG),
}


def configure(ns: Collection, section: str, defaults: dict[str, Any]) -> None:
    """Give `ns` its configuration defaults and record their types for validation."""
    SCHEMA[section] = dict(defaults)
    ns.configure({section: dict(defaults)})


def env_var(section: str, key: str) -> str:
    """The environment variable that overrides `section.key` (`prism.env` is PRISM_ENV)."""
    if section == "prism":
        return f"PRISM_{key.upper()}"
    return f"PRISM_{section.upper()}_{key.upper()}"


class Section(dict[str, Any]):
    """A config section with attribute access: `s.cluster.provider`."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class Settings(NamedTuple):
    env: str
    profile: Profile
    sections: dict[str, Section]
    dotenv: dict[str, str]
    # $HOME of the -H host the commands run on, asked the first time a path needs it (a
    # round trip over SSH); None for this machine
    home_of_host: Callable[[], str] | None = None

    def __getattr__(self, section: str) -> Section:
        try:
            return self.sections[section]
        except KeyError:
            raise AttributeError(section) from None

    @property
    def host_home(self) -> str:
        """$HOME of the -H host; "" for this machine."""
        return self.home_of_host() if self.home_of_host else ""

    @property
    def cluster_name(self) -> str:
        return str(self.sections["cluster"]["name"]) or self.profile.cluster

    @property
    def overlay(self) -> str:
        return str(self.sections["deploy"]["overlay"]) or self.profile.overlay

    def cluster_int(self, key: str) -> int:
        """servers / agents / *_port: the config value when set, else the profile's."""
        value = int(self.sections["cluster"][key])
        return value if value > 0 else int(getattr(self.profile, key))

    @property
    def data_dir(self) -> Path:
        """Where this environment keeps data that outlives its cluster (guide correction 9),
        on the machine the commands run on: a -H host's own home for `~`."""
        return self.place(self.sections["prism"]["data_dir"]) / self.env

    @property
    def local_data_dir(self) -> Path:
        """The data directory on this machine, whichever machine the commands run on (what
        this project records about the clusters it made lives here)."""
        return resolve_path(self.sections["prism"]["data_dir"]) / self.env

    def place(self, value: str) -> Path:
        """A configured path on the machine the commands run on. Here: `resolve_path`. On a
        -H host: `~` is the host's home, and a relative path is relative to it (this
        project's directory is not there)."""
        text = str(value)
        if not self.home_of_host:
            return resolve_path(value)
        if text.startswith("/"):
            return Path(text)  # absolute: no need to ask the host
        if text == "~" or text.startswith("~/"):
            return Path(self.host_home + text[1:])
        return Path(self.host_home) / text

    def secret(self, key: str) -> str:
        """A credential from the environment or `.env`; never from committed files."""
        value = os.environ.get(key) or self.dotenv.get(key, "")
        if not value:
            raise Exit(
                f"{key} is not set; copy .env.example to .env (or export it) and run the task again"
            )
        return value


def resolve_path(value: str) -> Path:
    """A configured path: `~` expanded, relative paths anchored at the project root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


_dotenv_cache: dict[tuple[str, float], dict[str, str]] = {}


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file strictly: a malformed line is an error naming the line."""
    if not path.is_file():
        return {}
    key = (str(path), path.stat().st_mtime)
    if key in _dotenv_cache:
        return _dotenv_cache[key]
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise Exit(
            f"{path}: byte {error.start} is not UTF-8; save the file as UTF-8 text"
        ) from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string.strip()
            raise Exit(
                f"{path}:{binding.original.line}: cannot parse {line!r}; "
                "expected KEY=value (see .env.example)"
            )
    values = {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}
    _dotenv_cache[key] = values
    return values


def split_names(text: str) -> list[str]:
    """A comma-separated list of names, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _cast(value: str, default: Any, where: str) -> Any:
    if isinstance(default, list):
        return split_names(value)
    if isinstance(default, bool):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise Exit(f"{where}={value!r} is not a boolean; use true or false")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise Exit(f"{where}={value!r} is not a whole number") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise Exit(f"{where}={value!r} is not a number") from None
    return value


def _check_type(value: Any, default: Any, where: str) -> Any:
    """Values from invoke.yaml or -f files must have the default's type. A list of names (a
    list default) may be a YAML list of strings or, as in the environment, one comma-separated
    string; either way it becomes a list."""
    if isinstance(default, list):
        return _name_list(value, where)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        expected = type(default).__name__
        raise Exit(f"config {where} is {value!r} ({type(value).__name__}); expected {expected}")
    return value


def _name_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return split_names(value)
    if not isinstance(value, list):
        raise Exit(
            f"config {where} is {value!r} ({type(value).__name__}); expected a list of names "
            "or one comma-separated str"
        )
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise Exit(
                f"config {where}[{index}] is {item!r} ({type(item).__name__}); expected a "
                "non-empty str (quote it in YAML)"
            )
    return [item.strip() for item in value]


# Settings already merged, by the identity of the invoke Config they came from (Config objects
# are not hashable): a run merges once per Config, i.e. once locally and once per -H host.
_loaded: dict[int, tuple[weakref.ref[Any], tuple[Any, ...], Settings]] = {}


def load(c: Context) -> Settings:
    """All configuration for this run, merged and validated once per invoke Config.

    Every task and engine function calls this instead of passing settings through each layer;
    the merge happens the first time, and again only when the environment or `.env` changed
    (tests switch PRISM_* variables between calls within one process)."""
    config = c.config
    stamp = _environment_stamp()
    hit = _loaded.get(id(config))
    if hit is not None and hit[0]() is config and hit[1] == stamp:
        return hit[2]
    settings = _merge(c)
    _loaded[id(config)] = (weakref.ref(config), stamp, settings)
    return settings


def _environment_stamp() -> tuple[Any, ...]:
    """What `_merge` reads besides the Config: PRISM_* variables and the .env file's mtime."""
    prism = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PRISM_")))
    dotenv = resolve_path(os.environ.get("PRISM_DOTENV", ".env"))
    try:
        mtime = dotenv.stat().st_mtime_ns
    except OSError:
        mtime = None
    return (prism, str(dotenv), mtime)


def _merge(c: Context) -> Settings:
    """Merge and validate all configuration: defaults, Config files, environment, .env."""
    environ = dict(os.environ)
    dotenv_path = resolve_path(environ.get("PRISM_DOTENV", ".env"))
    dotenv = read_dotenv(dotenv_path)
    merged_env = {**dotenv, **environ}  # the real environment wins over .env

    _reject_unknown_variables(merged_env, dotenv_path)
    _reject_unknown_sections(c)
    sections: dict[str, Section] = {}
    for section, defaults in SCHEMA.items():
        configured = c.config.get(section, {}) or {}
        if not isinstance(configured, Mapping):
            raise Exit(
                f"config {section} is {configured!r}; expected a mapping of keys "
                f"({', '.join(defaults)})"
            )
        unknown = sorted(set(configured) - set(defaults))
        if unknown:
            raise Exit(
                f"config: unknown key {section}.{unknown[0]}{_closest(unknown[0], defaults)} "
                f"(known: {', '.join(defaults)})"
            )
        values = Section()
        for key, default in defaults.items():
            value = _check_type(configured.get(key, default), default, f"{section}.{key}")
            var = env_var(section, key)
            if var in merged_env:
                value = _cast(merged_env[var], default, var)
            values[key] = value
        sections[section] = values

    env = sections["prism"]["env"]
    if env not in ENVIRONMENTS:
        raise Exit(
            f"unknown environment PRISM_ENV={env!r}; choose one of: {', '.join(ENVIRONMENTS)}"
        )
    images = sections.get("images")
    if images is not None and not images["tag"]:
        # empty: the environment's, as the overlay it deploys pins it (a deploy replaces the
        # tag an overlay gives the Prism images with images.tag)
        images["tag"] = ENVIRONMENTS[env].image_tag
    for section, values in sections.items():
        for key, value in values.items():
            _check_value(section, key, value)
    if images is not None and images["registry"] and sections["cluster"]["registry"]:
        raise Exit(
            "PRISM_IMAGES_REGISTRY and PRISM_CLUSTER_REGISTRY=true both say where the cluster "
            "pulls the Prism images from; keep one (images.registry: a registry of your own, "
            "cluster.registry: k3d's local one)"
        )
    remote = hasattr(c, "host") and hasattr(c, "open")  # a -H host
    return Settings(
        env=env,
        profile=ENVIRONMENTS[env],
        sections=sections,
        dotenv=dotenv,
        home_of_host=functools.cache(lambda: _host_home(c)) if remote else None,
    )


def _host_home(c: Context) -> str:
    """$HOME on the -H host (one round trip, once per host and run; `echo` is a shell builtin,
    so a host with nothing on its PATH answers too). Asked with the connection's own `run`:
    `command` builds on this module."""
    answer = c.run('echo "$HOME"', hide=True, warn=True, dry=False, echo=False, in_stream=False)
    home = answer.stdout.strip() if answer is not None else ""
    if answer is None or not answer.ok or not home.startswith("/"):
        host = getattr(c, "label", None) or getattr(c, "host", "")
        raise Exit(
            f"cannot tell the home directory of host {host} ($HOME is {home or 'not set'}); "
            "set PRISM_DATA_DIR and PRISM_CLUSTER_KUBECONFIG to absolute paths",
            code=1,
        )
    return home


# Variables that are not `section.key` settings: credentials (into Secrets), and where to look.
CREDENTIALS = (
    "PRISM_MINIO_ROOT_USER",
    "PRISM_MINIO_ROOT_PASSWORD",
    "PRISM_POSTGRES_USER",
    "PRISM_POSTGRES_PASSWORD",
    "PRISM_POSTGRES_DB",
    "PRISM_S3_ACCESS_KEY",
    "PRISM_S3_SECRET_KEY",
)
OTHER_VARIABLES = ("PRISM_DOTENV", "PRISM_SIM_HOME")

# Bounds that keep a typo from becoming a cluster of a million nodes or a week-long wait.
MAX_SERVERS, MAX_AGENTS, MAX_SECONDS = 9, 100, 86400
NAME_MAX_LENGTH = 32  # k3d's limit, so that k3d-<name>-server-0 fits Docker's 64 characters
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
# A registry prefix for images (images.registry): what a docker reference has before the image
# name - a host with an optional port, then path components - with no scheme, tag or trailing /.
REGISTRY_PREFIX = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]+)?"
    r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
)
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")  # cluster.proxy_service_type


def _closest(word: str, known: Iterable[str]) -> str:
    """`; did you mean X?` for a near miss, else nothing."""
    from difflib import get_close_matches

    found = get_close_matches(word, list(known), n=1, cutoff=0.75)
    return f" (did you mean {found[0]}?)" if found else ""


def _reject_unknown_variables(merged_env: Mapping[str, str], dotenv_path: Path) -> None:
    known = {env_var(s, k) for s, keys in SCHEMA.items() for k in keys}
    known |= {*CREDENTIALS, *OTHER_VARIABLES}
    for var in sorted(v for v in merged_env if v.startswith("PRISM_") and v not in known):
        raise Exit(
            f"unknown setting {var}{_closest(var, known)}; every PRISM_* variable is listed in "
            f".env.example (it may come from {dotenv_path} or the environment)"
        )


def _reject_unknown_sections(c: Context) -> None:
    """A top-level config key that is neither ours nor invoke's/fabric's is a typo (`clustr:`)."""
    ours = set(SCHEMA)
    theirs = set(type(c.config).global_defaults())
    for key in sorted(str(k) for k in c.config):
        if key in ours or key in theirs or key.startswith("_"):
            continue
        raise Exit(
            f"config: unknown section {key!r}{_closest(key, ours)} "
            f"(this project's sections: {', '.join(sorted(ours))})"
        )


def _check_value(section: str, key: str, value: Any) -> None:
    """Ranges and shapes, checked where values enter, so no task runs on a nonsense value."""
    where = f"{env_var(section, key)} ({section}.{key})"
    if isinstance(value, bool):
        return
    if key.endswith("_port") and isinstance(value, int):
        low = 0 if section == "cluster" else 1  # 0: the environment's own port
        if not low <= value <= 65535:
            raise Exit(f"{where}={value} is not a TCP port; choose one between 1 and 65535")
    elif (section, key) == ("backup", "postgres_compression") and not 0 <= value <= 9:
        raise Exit(f"{where}={value} is not a pg_dump compression level; use 0 to 9")
    elif key in ("servers", "agents") and isinstance(value, int):
        top = MAX_SERVERS if key == "servers" else MAX_AGENTS
        if not 0 <= value <= top:
            raise Exit(f"{where}={value} is out of range; use 0 (the environment's) to {top}")
    elif key.endswith("timeout") and isinstance(value, int):
        if not 0 < value <= MAX_SECONDS:
            raise Exit(f"{where}={value} must be between 1 and {MAX_SECONDS} seconds")
    elif (section, key) == ("cluster", "name") and value:
        if len(value) > NAME_MAX_LENGTH or not DNS_LABEL.match(value):
            raise Exit(
                f"{where}={value!r} is not a cluster name: use at most {NAME_MAX_LENGTH} "
                "lowercase letters, digits and '-', starting and ending with a letter or digit"
            )
    elif (section, key) == ("ingress", "host") and not HOSTNAME.match(str(value)):
        raise Exit(f"{where}={value!r} is not a hostname (e.g. prism.local)")
    elif (section, key) == ("images", "registry") and value:
        if not REGISTRY_PREFIX.match(str(value)):
            raise Exit(
                f"{where}={value!r} is not a registry prefix: give host[:port]/path without "
                "scheme, tag or trailing slash (e.g. ghcr.io/acme/prism)"
            )
    elif (section, key) == ("cluster", "proxy_service_type") and value not in SERVICE_TYPES:
        raise Exit(f"{where}={value!r}: choose one of {', '.join(SERVICE_TYPES)}")


def seconds(value: object, default: int, flag: str = "--timeout") -> int:
    """A timeout flag (a string from the command line; empty or 0 for the default) as whole
    seconds, checked before anything runs."""
    if value is None or value == "" or value == 0:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise Exit(f"{flag} {value!r} is not a whole number of seconds", code=1) from None
    if not 0 < number <= MAX_SECONDS:
        raise Exit(f"{flag} {value!r} must be between 1 and {MAX_SECONDS} seconds", code=1)
    return number


def port(value: object, default: int, flag: str = "--port") -> int:
    """A port flag (a string from the command line; empty or 0 for the default)."""
    if value is None or value == "" or value == 0:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise Exit(f"{flag} {value!r} is not a port number", code=1) from None
    if not 0 < number <= 65535:
        raise Exit(f"{flag} {value!r} is not a TCP port; choose one between 1 and 65535", code=1)
    return number
