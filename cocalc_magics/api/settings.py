"""Where the client finds the CoCalc host, the API key and the default project.

Each setting is taken from the first source that has it:

1. an explicit argument;
2. the environment: ``COCALC_API_KEY``, ``COCALC_HOST``, ``COCALC_PROJECT_ID``;
3. the user config file, ``config.toml`` in platformdirs'
   ``user_config_dir("cocalc-magics")``, with the keys ``host``, ``api_key`` and
   ``project_id``;
4. for the host only, the default ``https://cocalc.com``.

The config file is read only if some setting is still missing after steps 1 and 2,
and it is rejected unless only its owner may read or write it, because it may
contain a key. :class:`Settings` records which source gave each value, so that
messages can name it. Its ``repr`` and ``describe()`` show the key only masked.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cocalc_magics.api.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_HOST",
    "ENV_API_KEY",
    "ENV_HOST",
    "ENV_PROJECT_ID",
    "Settings",
    "default_config_path",
    "mask_key",
    "normalize_host",
    "normalize_project_id",
    "resolve_settings",
]

DEFAULT_HOST = "https://cocalc.com"
ENV_API_KEY = "COCALC_API_KEY"
ENV_HOST = "COCALC_HOST"
ENV_PROJECT_ID = "COCALC_PROJECT_ID"

_ENV_NAMES = {"host": ENV_HOST, "api_key": ENV_API_KEY, "project_id": ENV_PROJECT_ID}
_LABELS = {"host": "host", "api_key": "API key", "project_id": "project id"}


def default_config_path() -> Path:
    """Return the path of the user config file (it need not exist)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("cocalc-magics")) / "config.toml"


def mask_key(api_key: str | None) -> str | None:
    """Return a display form of *api_key*: its ``sk-`` prefix and at most 4 last chars.

    Keys shorter than 16 characters show no trailing characters at all, so that a
    short test key is not revealed in large part.
    """
    if not api_key:
        return None
    prefix = api_key[:3] if api_key[:3] in ("sk-", "sk_") else ""
    tail = api_key[-4:] if len(api_key) >= 16 else ""
    return f"{prefix}…{tail}"


@dataclass(frozen=True)
class Settings:
    """The resolved host, API key and default project, with the source of each.

    Attributes
    ----------
    host : str
        Site URL without a trailing slash, possibly with a base path.
    api_key : str or None
        The key. Never shown by ``repr``, ``str`` or :meth:`describe`.
    project_id : str or None
        Default project (a lowercase UUID).
    sources : dict
        Maps ``"host"``, ``"api_key"`` and ``"project_id"`` to a description of
        where the value came from, for example ``"environment variable COCALC_HOST"``.
        Missing settings have no entry.
    config_path : Path or None
        The config file that was consulted, if any.
    """

    host: str = DEFAULT_HOST
    api_key: str | None = field(default=None, repr=False)
    project_id: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    config_path: Path | None = None

    @property
    def masked_key(self) -> str | None:
        """The key as ``sk-…abcd``, or None when there is no key."""
        return mask_key(self.api_key)

    def __repr__(self) -> str:
        return (
            f"Settings(host={self.host!r}, api_key={self.masked_key!r}, "
            f"project_id={self.project_id!r})"
        )

    __str__ = __repr__

    def missing(self) -> list[str]:
        """Return the names of the settings that have no value (``api_key``, ...)."""
        return [name for name in ("api_key", "project_id") if not getattr(self, name)]

    def describe(self) -> list[str]:
        """Return one line per setting: its (masked) value and its source.

        A missing setting gets a line saying how to provide it.
        """
        values = {
            "host": self.host,
            "api_key": self.masked_key,
            "project_id": self.project_id,
        }
        lines = []
        for name, value in values.items():
            label = _LABELS[name]
            if value:
                lines.append(f"{label}: {value} (from {self.sources.get(name, '?')})")
            else:
                lines.append(f"{label}: not set; {_how_to_set(name, self.config_path)}")
        return lines

    def with_overrides(
        self, *, source: str = "argument", **values: str | None
    ) -> Settings:
        """Return a copy where the given non-None values replace the current ones.

        *source* names where the new values came from, for :meth:`describe`.
        """
        changed = {k: v for k, v in values.items() if v is not None}
        if not changed:
            return self

        sources = dict(self.sources)
        normalized = _normalize_all(changed, {k: source for k in changed})
        for name in changed:
            sources[name] = source
        fields = {
            "host": self.host,
            "api_key": self.api_key,
            "project_id": self.project_id,
        }
        fields.update(normalized)
        return Settings(**fields, sources=sources, config_path=self.config_path)


def _how_to_set(name: str, config_path: Path | None) -> str:
    where = config_path or default_config_path()
    return f"set {_ENV_NAMES[name]} or add {name} to {where}"


def normalize_host(host: str, *, source: str = "argument") -> str:
    """Check that *host* is an http(s) site URL and return it without a trailing slash.

    Raises
    ------
    ConfigurationError
        If the scheme is not http or https, the host name is missing, or the URL
        contains credentials, a query or a fragment.
    """
    parts = urlsplit(host.strip())
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "it must start with https:// (or http:// for a local server)"
    elif not parts.hostname:
        problem = "it has no host name"
    elif parts.username or parts.password:
        problem = "it must not contain a user name or password"
    elif parts.query or parts.fragment:
        problem = "it must not contain a query or fragment"
    if problem:
        display_host = host if not (parts.username or parts.password) else "<hidden>"
        raise ConfigurationError(
            "settings",
            f"invalid CoCalc host {display_host!r} from {source}: {problem}",
            hint="Use the site URL, for example https://cocalc.com or "
            "https://example.org/cocalc for a site under a base path.",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def normalize_project_id(project_id: str, *, source: str = "argument") -> str:
    """Check that *project_id* is a UUID and return it in lowercase.

    Raises
    ------
    ConfigurationError
        If it is not a UUID.
    """
    try:
        return str(uuid.UUID(str(project_id).strip()))
    except ValueError:
        raise ConfigurationError(
            "settings",
            f"invalid project id {project_id!r} from {source}: it must be a UUID",
            hint="Copy the project id from the project's URL or settings page in "
            "CoCalc.",
        ) from None


def _normalize_all(values: Mapping[str, str], sources: Mapping[str, str]) -> dict:
    normalized = dict(values)
    if "host" in values:
        normalized["host"] = normalize_host(values["host"], source=sources["host"])
    if "project_id" in values:
        normalized["project_id"] = normalize_project_id(
            values["project_id"], source=sources["project_id"]
        )
    if "api_key" in values:
        key = values["api_key"].strip()
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            raise ConfigurationError(
                "settings",
                f"invalid API key from {sources['api_key']}: it is empty or "
                "contains whitespace or characters other than printable ASCII",
                hint="Copy the key again from the CoCalc web UI.",
            )
        normalized["api_key"] = key
    return normalized


def resolve_settings(
    host: str | None = None,
    api_key: str | None = None,
    project_id: str | None = None,
    *,
    config_path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    explicit_sources: Mapping[str, str] | None = None,
) -> Settings:
    """Collect the settings from arguments, the environment and the config file.

    Parameters
    ----------
    host, api_key, project_id : str, optional
        Explicit values; they win over every other source.
    config_path : path-like, optional
        Config file to use instead of the default one.
    environ : mapping, optional
        Environment to read instead of ``os.environ``.
    explicit_sources : mapping, optional
        Where explicit values came from, by setting name, for messages and
        :meth:`Settings.describe`; ``"argument"`` when not given.

    Returns
    -------
    Settings
        Missing values are None; check :meth:`Settings.missing`.

    Raises
    ------
    ConfigurationError
        For an invalid value, or a config file that is unreadable, not valid TOML,
        or readable by users other than its owner.
    """
    environ = os.environ if environ is None else environ
    path = Path(config_path) if config_path is not None else default_config_path()
    explicit = {"host": host, "api_key": api_key, "project_id": project_id}

    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, value in explicit.items():
        if value is not None and str(value).strip():
            source = (explicit_sources or {}).get(name, "argument")
            values[name], sources[name] = str(value), source
            continue
        env_value = environ.get(_ENV_NAMES[name], "").strip()
        if env_value:
            values[name] = env_value
            sources[name] = f"environment variable {_ENV_NAMES[name]}"

    if len(values) < len(explicit):
        for name, value in _read_config_file(path).items():
            if name not in values:
                values[name], sources[name] = value, f"config file {path}"

    if "host" not in values:
        values["host"], sources["host"] = DEFAULT_HOST, "default"
    normalized = _normalize_all(values, sources)
    return Settings(**normalized, sources=sources, config_path=path)


def _read_config_file(path: Path) -> dict[str, str]:
    """Return the known string settings of the config file, or {} if it is absent."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _config_error(
            path, f"cannot be read ({exc.strerror})", hint=_UNREADABLE_HINT
        ) from None

    _check_owner_only(path, info)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _config_error(
            path, f"cannot be read ({exc})", hint=_UNREADABLE_HINT
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise _config_error(
            path, f"is not valid TOML ({exc})", hint=_SYNTAX_HINT
        ) from None

    _warn_unknown_keys(path, data)
    result = {}
    for name in _FILE_KEYS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _config_error(
                path, f"has a non-string value for {name!r}", hint=_SYNTAX_HINT
            )
        if value.strip():
            result[name] = value
    return result


_FILE_KEYS = ("host", "api_key", "project_id")
_SYNTAX_HINT = (
    'Each setting is one line with a quoted value, for example: host = "https://'
    'cocalc.com". Fix the line the message names.'
)
_UNREADABLE_HINT = "Check that the file exists and that you may read it."


def _warn_unknown_keys(path: Path, data: dict) -> None:
    for key in data:
        if key in _FILE_KEYS:
            continue
        close = difflib.get_close_matches(key, _FILE_KEYS, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        warnings.warn(
            f"config file {path}: unknown setting {key!r} is ignored{guess}",
            stacklevel=4,
        )


def _check_owner_only(path: Path, info: os.stat_result) -> None:
    # NOTE: on Windows the mode bits do not describe who may read the file, so the
    # check is skipped there and the file's ACL is trusted.
    if os.name != "posix":
        return
    if info.st_uid != os.getuid():
        raise _config_error(
            path,
            "belongs to another user",
            hint=f"Use a config file that you own, or remove {path}.",
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        mode = oct(stat.S_IMODE(info.st_mode))
        raise _config_error(
            path,
            f"can be read or written by other users ({mode})",
            hint=f"Run: chmod 600 {path}",
        )


def _config_error(path: Path, problem: str, *, hint: str) -> ConfigurationError:
    return ConfigurationError(
        "settings", f"config file {path} {problem}; it was not used", hint=hint
    )
