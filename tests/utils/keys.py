"""API keys for tests, made as `demeter keys create` makes them."""

from __future__ import annotations

from app.apikeys import create_key
from app.db.session import db_session

USER_SCOPES = ["photos:write", "photos:read", "stock:read"]


def make_api_key(tenant: str = "default", scopes: list[str] | None = None, name: str = "tests") -> str:
    """A new key's secret."""
    with db_session() as db:
        return create_key(db, name=name, tenant=tenant, scopes=scopes or USER_SCOPES).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
