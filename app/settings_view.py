"""`demeter config`: the effective settings, as the processes started here would see them, secrets masked.

A value is masked when its name says it is a secret (password, secret, token, key,
auth) or when it is a URL with a password (`redis://:***@host`, `postgresql://user:***@host`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import Settings, get_settings

MASK = "***"
SECRET_NAME = re.compile(r"password|secret|token|(^|_)keys?($|_)|auth", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@/\s]+)(?P<tail>@)", re.IGNORECASE)
# Empty connection settings mean "embedded default"; showing what they resolve to is the useful part.
RESOLVED = {"database_url": "database_url_resolved", "broker_url": "broker_url_resolved",
            "result_backend": "result_backend_resolved", "storage_dir": "storage_dir_resolved"}


def mask_url(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://user:***@host`; anything else unchanged."""
    return URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)


def _mask_credentials(value: str) -> str:
    """'user:password[,user2:password2]' (FLOWER_BASIC_AUTH) keeps the user names."""
    return ",".join(f"{pair.split(':', 1)[0]}:{MASK}" if ":" in pair else MASK for pair in value.split(","))


def masked(name: str, value: Any) -> Any:
    """The value as `demeter config` shows it."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        if SECRET_NAME.search(name) and value:
            return _mask_credentials(value) if "auth" in name.lower() else MASK
        return mask_url(value)
    if isinstance(value, dict | list) and SECRET_NAME.search(name) and value:
        return MASK
    return value


def effective(settings: Settings) -> dict[str, Any]:
    """Environment variable name -> effective value, masked, in the settings' declaration order."""
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in RESOLVED and not value:
            value = getattr(settings, RESOLVED[name])
        values[name.upper()] = masked(name, value)
    return values


def print_settings(as_json: bool) -> None:
    values = effective(get_settings())
    if as_json:
        print(json.dumps(values, indent=2, default=str))
        return
    for name, value in values.items():
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
        print(f"{name}={text}")
