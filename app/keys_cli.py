"""`demeter keys create | list | revoke`: API keys, straight on the database (run where the service runs)."""

from __future__ import annotations

import argparse
import json

from app.apikeys import create_key, list_keys, revoke_key
from app.db.models import ApiKey
from app.db.session import db_session


def _row(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id, "prefix": key.prefix, "name": key.name, "tenant": key.tenant, "scopes": key.scopes,
        "created_at": key.created_at.isoformat(), "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _create(args: argparse.Namespace) -> int:
    try:
        with db_session() as db:
            made = create_key(db, name=args.name, tenant=args.tenant, scopes=args.scope)
            row = _row(made.key)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    if args.json:
        print(json.dumps({**row, "key": made.token}))
    else:
        scopes = " ".join(made.key.scopes)
        print(f"created key {row['id']} ({row['prefix']}) for tenant {row['tenant']}, scopes {scopes}")
        print(f"\n    {made.token}\n\nThis is the only time the key is shown: only its SHA-256 digest is kept.")
    return 0


def _list(args: argparse.Namespace) -> int:
    with db_session() as db:
        keys = list_keys(db, include_revoked=args.all)
    if args.json:
        print(json.dumps([_row(key) for key in keys]))
        return 0
    for key in keys:
        revoked = f"  revoked {key.revoked_at.isoformat()}" if key.revoked_at else ""
        print(f"{key.id:>4}  {key.prefix}  {key.tenant:<16} {' '.join(key.scopes):<40} {key.name}{revoked}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with db_session() as db:
        key = revoke_key(db, ident=args.key)
        if key is None:
            print(f"no key with id or prefix {args.key!r}")
            return 1
        print(f"revoked key {key.id} ({key.prefix}, {key.name}); it is refused from the next request on")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. 'inventory-sync'")
    create.add_argument("--tenant", default="default", help="whose photos it uploads and reads")
    create.add_argument("--scope", action="append", required=True,
                        help="photos:write, photos:read, stock:read or admin; repeat for several")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=_create)
    listing = keys_sub.add_parser("list", help="the keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(func=_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or prefix; effective at once")
    revoke.add_argument("key", help="the key's id or its prefix (from `demeter keys list`)")
    revoke.set_defaults(func=_revoke)
