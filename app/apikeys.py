"""API keys: bearer tokens with scopes and a tenant, of which only a digest is stored.

A token reads `dmt_<prefix>_<secret>`: the prefix (8 hex characters) is stored in clear and
finds the row; the secret is 32 random bytes (`secrets.token_urlsafe`). Only the SHA-256 of
the whole token is kept. A slow password hash (bcrypt, argon2) is for low-entropy secrets a
person chose; a 256-bit random token cannot be guessed, so one SHA-256 is the usual choice
(GitHub's and Stripe's tokens are kept that way) and costs microseconds a request. The digest is
compared in constant time. Nothing here knows HTTP; the API's dependency is app/api/security.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, utcnow

Scope = Literal["photos:write", "photos:read", "stock:read", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
ADMIN = "admin"  # every scope, on every tenant's data (operators)

TOKEN_PREFIX = "dmt_"
_TOKEN = re.compile(r"^dmt_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's row id, prefix and name, its tenant and scopes."""

    key_id: int
    prefix: str
    name: str
    tenant: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    @property
    def all_tenants(self) -> bool:
        return ADMIN in self.scopes


@dataclass(frozen=True)
class NewKey:
    token: str  # shown once, never stored
    key: ApiKey


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh `(token, prefix)`."""
    prefix = secrets.token_hex(4)
    return f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_prefix(token: str) -> str | None:
    """The look-up prefix of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def check_scopes(scopes: list[str]) -> list[str]:
    """The scopes, deduplicated and sorted; ValueError names an unknown one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}")
    return sorted(set(scopes))


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise ValueError("a tenant is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return tenant


def create_key(db: Session, *, name: str, tenant: str, scopes: list[str]) -> NewKey:
    token, prefix = new_token()
    key = ApiKey(prefix=prefix, digest=digest(token), name=name[:100], tenant=check_tenant(tenant),
                 scopes=check_scopes(scopes))
    db.add(key)
    db.flush()
    return NewKey(token=token, key=key)


def list_keys(db: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(db.scalars(query))


def revoke_key(db: Session, *, ident: str) -> ApiKey | None:
    """Revoke the key with this row id or prefix; None if there is none. Revoking twice keeps the first time."""
    conditions = [ApiKey.prefix == ident]
    if ident.isdigit():
        conditions.append(ApiKey.id == int(ident))
    key = db.scalars(select(ApiKey).where(or_(*conditions))).first()
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def authenticate(db: Session, *, token: str) -> Principal | None:
    """The live key this token belongs to, or None (malformed, unknown, wrong secret or revoked).

    Read on every request, so a revocation takes effect at the next request.
    """
    prefix = token_prefix(token)
    if prefix is None:
        return None
    key = db.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.digest, digest(token)):
        return None
    return Principal(key_id=key.id, prefix=key.prefix, name=key.name, tenant=key.tenant, scopes=frozenset(key.scopes))
