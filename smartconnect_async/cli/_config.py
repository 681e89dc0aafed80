"""Where the command line's settings come from: flags, environment variables and named
profiles (flag > environment > profile), the password (environment, OS keyring or a
prompt, never a flag) and the user's config and cache directories."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import _env

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "APP_NAME",
    "KEYRING_SERVICE",
    "ConfigError",
    "Settings",
    "cache_dir",
    "config_dir",
    "config_file",
    "keyring_password",
    "load_profiles",
    "resolve_settings",
]

logger = logging.getLogger("smartconnect_async.cli")

APP_NAME = "smartconnect-async"
KEYRING_SERVICE = "smartconnect-async"
CONFIG_FILE_NAME = "config.toml"

ENV_API_URL = _env.API_URL
ENV_EMAIL = _env.EMAIL
ENV_PASSWORD = _env.PASSWORD
ENV_COMPANY_ID = _env.COMPANY_ID
ENV_PROFILE = "SMARTCONNECT_PROFILE"
ENV_CONFIG_DIR = "SMARTCONNECT_CONFIG_DIR"
ENV_CACHE_DIR = "SMARTCONNECT_CACHE_DIR"

FIELDS = ("api_url", "email", "company_id")
_ENV_NAMES = {"api_url": ENV_API_URL, "email": ENV_EMAIL, "company_id": ENV_COMPANY_ID}
_FLAG_NAMES = {"api_url": "--api-url", "email": "--email", "company_id": "--company-id"}
DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """The command line is missing a setting or has a bad one (exit status 2)."""


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's config directory (``SMARTCONNECT_CONFIG_DIR`` overrides it)."""
    override = environ.get(ENV_CONFIG_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's cache directory (``SMARTCONNECT_CACHE_DIR`` overrides it)."""
    override = environ.get(ENV_CACHE_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME, appauthor=False)


def config_file(environ: Mapping[str, str] = os.environ) -> Path:
    """The TOML file that holds the named profiles."""
    return config_dir(environ) / CONFIG_FILE_NAME


def load_profiles(path: Path) -> dict[str, dict[str, str]]:
    """The ``[profiles.NAME]`` tables of the config file (none if there is no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the config file {path} is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"the config file {path} is nested too deep to read") from None
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    profiles: dict[str, dict[str, str]] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [profiles.{name}] must be a table")
        profiles[name] = _profile(path, name, table)
    return profiles


def _profile(path: Path, name: str, table: dict[str, Any]) -> dict[str, str]:
    profile: dict[str, str] = {}
    for key, value in table.items():
        if key in ("password", "token"):
            logger.warning(
                "%s: [profiles.%s] has a %r: it is ignored; secrets never go in the config file "
                "(use %s or the OS keyring)",
                path,
                name,
                key,
                ENV_PASSWORD,
            )
            continue
        if key not in FIELDS:
            logger.warning("%s: [profiles.%s]: unknown setting %r is ignored", path, name, key)
            continue
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{path}: [profiles.{name}] {key} must be a string")
        profile[key] = str(value)
    return profile


@dataclass(frozen=True)
class Settings:
    """The resolved connection settings, and where each one came from."""

    api_url: str | None
    email: str | None
    company_id: str | None
    profile: str | None
    sources: Mapping[str, str] = field(default_factory=dict)

    def require(self) -> tuple[str, str, str]:
        """``(api_url, email, company_id)``, or ``ConfigError`` naming what is missing."""
        missing = [name for name in FIELDS if not getattr(self, name)]
        if missing:
            how = "; ".join(
                f"{name.replace('_', ' ')}: {_FLAG_NAMES[name]} or {_ENV_NAMES[name]}"
                for name in missing
            )
            raise ConfigError(
                f"missing setting(s) {', '.join(missing)} — set {how}, or use a profile "
                f"(--profile NAME, [profiles.NAME] in {CONFIG_FILE_NAME})"
            )
        assert self.api_url is not None
        assert self.email is not None
        assert self.company_id is not None
        check_api_url(self.api_url)
        return self.api_url, self.email, self.company_id


def check_api_url(url: str) -> None:
    """``ConfigError`` unless ``url`` is an http(s) URL with a host and nothing after
    its path (the API Url, e.g. ``https://host/API``)."""
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "it must start with http:// or https://"
    elif not parts.hostname:
        problem = "it has no host"
    elif parts.query or parts.fragment or url.endswith(("?", "#")):
        problem = "it must not have a query or a fragment"
    elif any(c.isspace() for c in url):
        problem = "it must not contain spaces"
    if problem is not None:
        raise ConfigError(f"the API Url {url!r} is not usable: {problem}")


def resolve_settings(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str] = os.environ,
    profiles: Mapping[str, Mapping[str, str]] | None = None,
) -> Settings:
    """Each setting from its flag, else its environment variable, else the profile.

    The profile is ``--profile``, else ``SMARTCONNECT_PROFILE``, else the profile named
    ``default`` when the config file has one. A profile asked for by name must exist.
    """
    if profiles is None:
        profiles = load_profiles(config_file(environ))
    chosen = flags.get("profile") or environ.get(ENV_PROFILE) or None
    if chosen is not None and chosen not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"no profile named {chosen!r} in {config_file(environ)} (profiles: {known})"
        )
    if chosen is None and DEFAULT_PROFILE in profiles:
        chosen = DEFAULT_PROFILE
    profile = profiles.get(chosen, {}) if chosen is not None else {}
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        for source, value in (
            (_FLAG_NAMES[name], flags.get(name)),
            (_ENV_NAMES[name], environ.get(_ENV_NAMES[name])),
            (f"profile {chosen}", profile.get(name)),
        ):
            if value is not None and value.strip():
                values[name] = value.strip()
                sources[name] = source
                break
        else:
            values[name] = None
    return Settings(
        api_url=values["api_url"],
        email=values["email"],
        company_id=values["company_id"],
        profile=chosen,
        sources=sources,
    )


def keyring_password(email: str) -> str | None:
    """The password saved in the OS keyring for ``email`` (service "smartconnect-async"),
    or ``None`` when ``keyring`` is not installed, has no usable backend or holds none."""
    try:
        import keyring  # type: ignore[import-not-found, unused-ignore]  # an optional extra
    except ImportError:
        return None
    try:
        password: object = keyring.get_password(KEYRING_SERVICE, email)
    except Exception as exc:  # any backend failure just means "no password there"
        logger.debug("the OS keyring could not be read (%s)", type(exc).__name__)
        return None
    return password if isinstance(password, str) and password else None


def environment_password(environ: Mapping[str, str] = os.environ) -> str | None:
    """The password in ``SMARTCONNECT_PASSWORD``, if set and not empty."""
    return environ.get(ENV_PASSWORD) or None
