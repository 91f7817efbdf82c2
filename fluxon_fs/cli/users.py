"""``fluxon users``: manage users, scope grants and S3 access keys of an access db from the shell.

::

    fluxon users add USER --db PATH [--can-manage-users] [--password PW]
    fluxon users remove USER --db PATH
    fluxon users passwd USER --db PATH [--password PW]
    fluxon users can-manage USER {yes,no} --db PATH
    fluxon users grant --db PATH --export NAME [--prefix DIR] --mode {read_only,read_write} USER [USER ...]
    fluxon users revoke --db PATH --export NAME [--prefix DIR] [--mode MODE] [USER ...]
    fluxon users list --db PATH [--json]
    fluxon users create-key USER --db PATH [--json]
    fluxon users list-keys [USER] --db PATH [--json]
    fluxon users revoke-key ACCESS_KEY_ID --db PATH

Passwords come from ``--password`` (visible to other local users in the process list), else from an
interactive prompt asked twice when stdin is a terminal, else from the first line of stdin
(``printf '%s\\n' "$PW" | fluxon users passwd alice --db access.db``). Only ``add`` creates a
missing database; the other actions refuse a path that does not exist, so a typo is not a new,
empty access db. Exit status: 0 done, 1 refused (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from fluxon_core.access.records import ScopeMode
from fluxon_core.config import load_backend_block
from fluxon_core.errors import InvalidArgumentError
from fluxon_core.protocols import AccessStore
from fluxon_fs.cli.runner import UsageError, run_command

Action = Callable[[AccessStore, argparse.Namespace], int]


def _open_store(db: str, *, create: bool) -> AccessStore:
    if not create and not Path(db).is_file():
        raise UsageError(f"access db {db!r} does not exist (only 'fluxon users add' creates one)")
    store: AccessStore = load_backend_block("access_store", {"kind": "sqlite", "sqlite": {"path": db}}, "--db").create(
        "access_store"
    )
    return store


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass(f"new password for {args.username}: ")
        if first != getpass.getpass("repeat the password: "):
            raise UsageError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _add(store: AccessStore, args: argparse.Namespace) -> int:
    store.add_user(args.username, _read_password(args), can_manage_users=args.can_manage_users)
    print(f"added user {args.username}" + (" (can manage users)" if args.can_manage_users else ""))
    return 0


def _remove(store: AccessStore, args: argparse.Namespace) -> int:
    store.remove_user(args.username)
    print(f"removed user {args.username}")
    return 0


def _passwd(store: AccessStore, args: argparse.Namespace) -> int:
    if store.get_user(args.username) is None:  # before prompting for a password that cannot be used
        raise InvalidArgumentError(f"user {args.username!r} does not exist")
    store.set_password(args.username, _read_password(args))
    print(f"changed the password of {args.username}; its open sessions end within the revocation bound")
    return 0


def _can_manage(store: AccessStore, args: argparse.Namespace) -> int:
    user = store.set_can_manage_users(args.username, args.value == "yes")
    print(f"{user.username} can manage users: {'yes' if user.can_manage_users else 'no'}")
    return 0


def _grant(store: AccessStore, args: argparse.Namespace) -> int:
    scope = store.grant(args.export, args.prefix, ScopeMode(args.mode), args.usernames)
    print(f"{scope.export_name}:/{scope.prefix} {scope.mode.value}: {', '.join(scope.usernames)}")
    return 0


def _revoke(store: AccessStore, args: argparse.Namespace) -> int:
    mode = None if args.mode is None else ScopeMode(args.mode)
    removed = store.revoke(args.export, args.prefix, mode=mode, usernames=args.usernames or None)
    if not removed:
        print(f"fluxon users: no matching grant on {args.export}:/{args.prefix.strip('/')}", file=sys.stderr)
        return 1
    print(f"revoked {removed} grant(s)")
    return 0


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _list(store: AccessStore, args: argparse.Namespace) -> int:
    users = store.list_users()
    scopes = store.list_scopes()
    if args.json:
        report = {
            "users": [{k: v for k, v in attrs.asdict(u).items() if k != "credential_version"} for u in users],
            "scope_access": [
                {"export_name": s.export_name, "prefix": s.prefix, "mode": s.mode.value, "usernames": list(s.usernames)}
                for s in scopes
            ],
        }
        print(json.dumps(report, indent=2))
        return 0
    width = max([len(u.username) for u in users] + [8])
    print(f"{'username'.ljust(width)}  can_manage_users  updated")
    for user in users:
        flag = "yes" if user.can_manage_users else "no"
        print(f"{user.username.ljust(width)}  {flag.ljust(16)}  {_timestamp(user.updated_at)}")
    print()
    print("scope_access:" if scopes else "scope_access: none")
    for scope in scopes:
        print(f"  {scope.export_name}:/{scope.prefix}  {scope.mode.value}  {', '.join(scope.usernames)}")
    return 0


def _create_key(store: AccessStore, args: argparse.Namespace) -> int:
    created = store.create_access_key(args.username)
    if args.json:
        print(
            json.dumps(
                {
                    "access_key_id": created.record.access_key_id,
                    "secret_access_key": created.secret_access_key,
                    "username": created.record.username,
                }
            )
        )
        return 0
    print(f"access key of {created.record.username} (the secret is shown only now; store it safely):")
    print(f"  aws_access_key_id     = {created.record.access_key_id}")
    print(f"  aws_secret_access_key = {created.secret_access_key}")
    return 0


def _list_keys(store: AccessStore, args: argparse.Namespace) -> int:
    keys = store.list_access_keys(args.username)
    if args.json:
        print(json.dumps([{**attrs.asdict(key), "created_at": _timestamp(key.created_at)} for key in keys], indent=2))
        return 0
    if not keys:
        print("no access keys")
        return 0
    width = max(len(key.username) for key in keys)
    print(f"{'access_key_id'.ljust(20)}  {'username'.ljust(width)}  created")
    for key in keys:
        print(f"{key.access_key_id.ljust(20)}  {key.username.ljust(width)}  {_timestamp(key.created_at)}")
    return 0


def _revoke_key(store: AccessStore, args: argparse.Namespace) -> int:
    record = store.revoke_access_key(args.access_key_id)
    print(
        f"revoked access key {record.access_key_id} of {record.username}; the S3 gateway refuses it within the revocation bound"
    )
    return 0


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="PATH", help="the access db (sqlite file)")


def _password_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password",
        help="the password (visible in the process list); default: prompt on a terminal, else first line of stdin",
    )


def _scope_arguments(parser: argparse.ArgumentParser, *, mode_required: bool) -> None:
    parser.add_argument("--export", required=True, metavar="NAME", help="export name")
    parser.add_argument("--prefix", default="", metavar="DIR", help="export-relative directory (default: whole export)")
    parser.add_argument("--mode", required=mode_required, choices=[m.value for m in ScopeMode])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``fluxon users`` actions."""
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION", required=True)

    def action(name: str, help: str, run: Action, *, creates: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        _db_argument(sub)
        sub.set_defaults(_users_action=run, _creates_db=creates)
        return sub

    add = action("add", "create a user (creates the access db if missing)", _add, creates=True)
    add.add_argument("username")
    add.add_argument("--can-manage-users", action="store_true", help="may manage users and reach every export")
    _password_argument(add)

    action("remove", "delete a user and its grants", _remove).add_argument("username")

    passwd = action("passwd", "set a user's password", _passwd)
    passwd.add_argument("username")
    _password_argument(passwd)

    can_manage = action("can-manage", "grant or withdraw user management", _can_manage)
    can_manage.add_argument("username")
    can_manage.add_argument("value", choices=["yes", "no"])

    grant = action("grant", "grant users access to an export directory", _grant)
    _scope_arguments(grant, mode_required=True)
    grant.add_argument("usernames", nargs="+", metavar="USER")

    revoke = action("revoke", "withdraw grants (all users of the scope when none is named)", _revoke)
    _scope_arguments(revoke, mode_required=False)
    revoke.add_argument("usernames", nargs="*", metavar="USER")

    listing = action("list", "show users and scope grants", _list)
    listing.add_argument("--json", action="store_true", help="print JSON")

    create_key = action("create-key", "create an S3 access key of a user (the secret is printed once)", _create_key)
    create_key.add_argument("username")
    create_key.add_argument("--json", action="store_true", help="print JSON")

    list_keys = action("list-keys", "show S3 access keys (never their secrets)", _list_keys)
    list_keys.add_argument("username", nargs="?", default=None, help="only this user's keys")
    list_keys.add_argument("--json", action="store_true", help="print JSON")

    action("revoke-key", "delete an S3 access key", _revoke_key).add_argument("access_key_id")


def _run_with_store(args: argparse.Namespace) -> int:
    store = _open_store(args.db, create=args._creates_db)
    try:
        return int(args._users_action(store, args))
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``fluxon users`` command."""
    return run_command("users", lambda: _run_with_store(args))
