"""Parsing what arrives in portal URLs and forms (pure): months, days, feeds, local redirects,
and the typed forms. Anything malformed is an ``InvalidParameter`` (or ``NotFound`` for a path
that names nothing), shown as an error page, never a 500."""

from __future__ import annotations

from datetime import date, datetime

import msgspec
from litestar.params import FromPath, FromQuery

from feedserver.errors import InvalidParameter, NotFound
from feedserver.metering.months import month_of, parse_month
from feedserver.plans import FEEDS

Query = FromQuery[str | None]  # an optional query parameter, as text
Segment = FromPath[str]  # a path segment


def month_param(value: str | None, now: datetime) -> str:
    """``YYYY-MM`` between 2000 and 2999 (UTC); the current month when absent."""
    if not value:
        return month_of(now)
    year, _ = parse_month(value)
    if not 2000 <= year <= 2999:
        raise InvalidParameter(f"month {value!r} is out of range", parameter="month")
    return value


def day_param(value: str) -> str:
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise NotFound(f"no such day: {value!r}") from None
    if len(value) != 10 or not 2000 <= parsed.year <= 2999:
        raise NotFound(f"no such day: {value!r}")
    return value


def feed_param(value: str) -> str:
    if value not in FEEDS:
        raise NotFound(f"no such feed: {value!r}")
    return value


def local_path(value: str, *, default: str, prefix: str = "/usage") -> str:
    """A redirect target that stays on this site, under ``prefix`` (else ``default``)."""
    if (not value.startswith(prefix) or value.startswith("//") or "\\" in value
            or any(ord(ch) < 0x21 for ch in value) or len(value) > 2000):
        return default
    return value


class CsrfForm(msgspec.Struct, kw_only=True):
    """Every form the portal posts carries the session's CSRF token."""

    csrf: str = ""


class LoginForm(CsrfForm, kw_only=True):
    username: str = ""
    password: str = ""
    next: str = ""


class MonthForm(CsrfForm, kw_only=True):
    month: str = ""


class CorrectionForm(CsrfForm, kw_only=True):
    kind: str = ""
    usage_id: str = ""
    quantity: str = ""
    customer_id: str = ""
    amount: str = ""
    month: str = ""
    reason: str = ""
    key: str = ""
    return_to: str = ""


class KeyForm(CsrfForm, kw_only=True):
    name: str = ""


class PasswordForm(CsrfForm, kw_only=True):
    current: str = ""
    new: str = ""
    confirm: str = ""


def whole_number(value: str, parameter: str) -> int:
    text = value.strip().replace(",", "").replace("_", "")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidParameter(f"{parameter} must be a whole number >= 0", parameter=parameter)
    return int(text)
