"""Admin commands: ``feedserver customers|plans|keys|users ...`` on ``settings.database``.

Secrets never travel through argv: passwords come from ``--password-stdin`` or a prompt, and a
new API key is printed once, alone on stdout, so it can be captured by a script.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from feedserver.accounts.admin import AccountAdmin
from feedserver.accounts.models import ApiKey
from feedserver.accounts.plans import DEFAULT_PLAN
from feedserver.cli.command import Command, bind
from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.plans import decode_plan
from feedserver.storage.db import connect


def register(sub: Any) -> None:
    customers = _group(sub, "customers", "customer organisations and their plans")
    _cmd(customers, "create", cmd_customer_create, "create a customer",
         ("name", {}), ("--plan", {"default": DEFAULT_PLAN, "help": "plan name (default: free)"}))
    _cmd(customers, "list", cmd_customer_list, "list customers")
    _cmd(customers, "set-plan", cmd_customer_set_plan, "move a customer to another plan",
         ("name", {}), ("plan", {}))
    _cmd(customers, "set-stripe", cmd_customer_set_stripe,
         "map a customer to its Stripe customer id (for usage exports)",
         ("name", {}), ("stripe_customer_id", {"metavar": "STRIPE_ID",
                                               "help": "cus_... ('' to unmap)"}))
    _cmd(customers, "disable", cmd_customer_disable, "refuse all access for a customer",
         ("name", {}))
    _cmd(customers, "enable", cmd_customer_enable, "re-enable a disabled customer", ("name", {}))

    plans = _group(sub, "plans", "plans: feeds, projects, quotas, rate limits, prices")
    _cmd(plans, "list", cmd_plan_list, "list plans")
    _cmd(plans, "show", cmd_plan_show, "print a plan as JSON", ("name", {}))
    _cmd(plans, "create", cmd_plan_create, "create a plan from a JSON file",
         ("name", {}), ("--from-json", {"required": True, "type": Path, "metavar": "FILE",
                                        "help": "plan JSON ('-' for stdin)"}))

    keys = _group(sub, "keys", "API keys (fs_<prefix>_<secret>)")
    _cmd(keys, "create", cmd_key_create, "create a key; it is printed once",
         ("customer", {}), ("--name", {"default": "", "metavar": "LABEL"}))
    _cmd(keys, "list", cmd_key_list, "list keys (never their secrets)",
         ("customer", {"nargs": "?"}))
    _cmd(keys, "revoke", cmd_key_revoke, "revoke a key now", ("prefix", {}))
    _cmd(keys, "rotate", cmd_key_rotate, "new key for the same customer; old one revoked",
         ("prefix", {}), ("--grace", {"type": int, "default": 0, "metavar": "SECONDS",
                                      "help": "keep the old key valid this long"}))

    users = _group(sub, "users", "user accounts (login with username and password)")
    _cmd(users, "create", cmd_user_create, "create a user of a customer",
         ("username", {}), ("--customer", {"required": True, "metavar": "NAME"}),
         ("--admin", {"action": "store_true"}),
         ("--password-stdin", {"action": "store_true",
                               "help": "read the password from the first line of stdin"}))
    _cmd(users, "list", cmd_user_list, "list users", ("--customer", {"metavar": "NAME"}))


def _group(sub: Any, name: str, text: str) -> Any:
    parser = sub.add_parser(name, help=text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def _cmd(group: Any, name: str, handler: Command, text: str,
         *arguments: tuple[str, dict[str, Any]]) -> None:
    parser = group.add_parser(name, help=text)
    for flag, options in arguments:
        parser.add_argument(flag, **options)
    bind(parser, handler)


@contextmanager
def _admin(settings: Settings) -> Iterator[AccountAdmin]:
    db = connect(settings.database)
    try:
        yield AccountAdmin(db)
    finally:
        db.close()


def _when(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# --- customers -------------------------------------------------------------------------------
def cmd_customer_create(settings: Settings, *, name: str, plan: str = DEFAULT_PLAN) -> int:
    with _admin(settings) as admin:
        customer = admin.create_customer(name, plan=plan)
    print(f"created customer {customer.name!r} ({customer.id}) on plan {customer.plan}")
    return 0


def cmd_customer_list(settings: Settings) -> int:
    with _admin(settings) as admin:
        customers = admin.list_customers()
    _table(("NAME", "PLAN", "STATUS", "ID", "CREATED", "STRIPE"),
           [(c.name, c.plan, "disabled" if c.disabled else "active", c.id, _when(c.created_at),
             c.stripe_customer_id or "-") for c in customers])
    return 0


def cmd_customer_set_plan(settings: Settings, *, name: str, plan: str) -> int:
    with _admin(settings) as admin:
        customer = admin.set_plan(name, plan)
    print(f"customer {customer.name!r} is now on plan {customer.plan}")
    return 0


def cmd_customer_set_stripe(settings: Settings, *, name: str, stripe_customer_id: str) -> int:
    with _admin(settings) as admin:
        customer = admin.set_stripe_customer(name, stripe_customer_id)
    print(f"customer {customer.name!r} maps to Stripe customer "
          f"{customer.stripe_customer_id or '(none)'}")
    return 0


def cmd_customer_disable(settings: Settings, *, name: str) -> int:
    with _admin(settings) as admin:
        admin.set_disabled(name, True)
    print(f"customer {name!r} disabled")
    return 0


def cmd_customer_enable(settings: Settings, *, name: str) -> int:
    with _admin(settings) as admin:
        admin.set_disabled(name, False)
    print(f"customer {name!r} enabled")
    return 0


# --- plans -----------------------------------------------------------------------------------
def cmd_plan_list(settings: Settings) -> int:
    with _admin(settings) as admin:
        plans = admin.list_plans()
    _table(("NAME", "FEEDS", "DESCRIPTION"),
           [(p.name, ",".join(p.feeds), p.description) for p in plans])
    return 0


def cmd_plan_show(settings: Settings, *, name: str) -> int:
    with _admin(settings) as admin:
        plan = admin.get_plan(name)
    print(msgspec.json.format(msgspec.json.encode(plan)).decode())
    return 0


def cmd_plan_create(settings: Settings, *, name: str, from_json: Path) -> int:
    raw = sys.stdin.buffer.read() if str(from_json) == "-" else from_json.read_bytes()
    plan = decode_plan(raw, name=name)  # validated before the database is touched
    with _admin(settings) as admin:
        admin.create_plan(plan)
    print(f"created plan {plan.name!r}")
    return 0


# --- keys ------------------------------------------------------------------------------------
def _print_new_key(full: str) -> None:
    print(full)
    print("feedserver: store this key now; it is not shown again", file=sys.stderr)


def cmd_key_create(settings: Settings, *, customer: str, name: str = "") -> int:
    with _admin(settings) as admin:
        _, full = admin.create_api_key(customer, name=name)
    _print_new_key(full)
    return 0


def _status(key: ApiKey, now: float) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None:
        return f"expires {_when(key.expires_at)}" if key.expires_at > now else "expired"
    return "active"


def cmd_key_list(settings: Settings, *, customer: str | None = None) -> int:
    with _admin(settings) as admin:
        names = {c.id: c.name for c in admin.list_customers()}
        found = admin.list_api_keys(customer)
        now = admin.clock()
    _table(("PREFIX", "CUSTOMER", "NAME", "STATUS", "CREATED", "LAST USED"),
           [(f"fs_{k.prefix}", names.get(k.customer_id, k.customer_id), k.name or "-",
             _status(k, now), _when(k.created_at), _when(k.last_used_at)) for k in found])
    return 0


def cmd_key_revoke(settings: Settings, *, prefix: str) -> int:
    with _admin(settings) as admin:
        key = admin.revoke_api_key(prefix)
    print(f"revoked fs_{key.prefix}")
    return 0


def cmd_key_rotate(settings: Settings, *, prefix: str, grace: int = 0) -> int:
    with _admin(settings) as admin:
        old, _, full = admin.rotate_api_key(prefix, grace_seconds=grace)
    _print_new_key(full)
    until = "now" if old.revoked_at is not None else f"at {_when(old.expires_at)}"
    print(f"feedserver: fs_{old.prefix} stops working {until}", file=sys.stderr)
    return 0


# --- users -----------------------------------------------------------------------------------
def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidParameter("no terminal to prompt for a password: use --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise InvalidParameter("passwords do not match")
    return password


def cmd_user_create(settings: Settings, *, username: str, customer: str, admin: bool = False,
                    password_stdin: bool = False) -> int:
    password = _read_password(password_stdin)
    with _admin(settings) as accounts:
        user = accounts.create_user(username, password, customer, is_admin=admin)
    role = "admin " if user.is_admin else ""
    print(f"created {role}user {user.username!r} ({user.id}) of customer {customer!r}")
    return 0


def cmd_user_list(settings: Settings, *, customer: str | None = None) -> int:
    with _admin(settings) as admin:
        names = {c.id: c.name for c in admin.list_customers()}
        users = admin.list_users(customer)
    _table(("USERNAME", "CUSTOMER", "ROLE", "STATUS", "CREATED"),
           [(u.username, names.get(u.customer_id, u.customer_id),
             "admin" if u.is_admin else "user", "disabled" if u.disabled else "active",
             _when(u.created_at)) for u in users])
    return 0
