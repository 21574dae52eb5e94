"""Identifier rules shared by every edge: project (wiki) ids, namespaces, page titles, the ids
events carry, and the snapshot / chunk identifiers built from them. Pure; no I/O.

Each rule exists twice, from ONE definition: as a msgspec constrained type (checked while an
event, a body or a plan is decoded) and as a ``check_*`` / ``parse_*`` function (checked where a
string arrives some other way: a path segment, a CLI argument). Whatever passes here can be put
in a blob key, a database row (SQLite and PostgreSQL ``BIGINT``), a URL or an HTML page as is.

- project: a MediaWiki database name, ``^[a-z][a-z0-9_]{0,62}$`` (``enwiki``,
  ``zh_min_nanwiki``): no dots, slashes, spaces, upper case or markup;
- namespace: ``0 .. 999999`` (pages with content never live in the negative virtual
  namespaces ``Special`` and ``Media``);
- title: 1 to 255 characters (MediaWiki's limit is 255 bytes), none of MediaWiki's illegal
  title characters ``# < > [ ] | { }``, no control characters, no surrounding white space;
- ids and sizes: JSON-safe integers ``0 .. 2**53 - 1`` (the event schemas' bound), revision
  and page ids from 1;
- snapshot identifier ``{project}_namespace_{namespace}``, chunk ``{snapshot}_chunk_{n}``,
  Parquet shard ``{snapshot}_shard_{n}``.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from feedserver.errors import InvalidIdentifier

MAX_SAFE = 2**53 - 1  # the event schemas' integer bound (JavaScript's safe integers)
MAX_NAMESPACE = 999_999
MAX_TITLE = 255

_PROJECT = r"[a-z][a-z0-9_]{0,62}"
_NAMESPACE = r"0|[1-9][0-9]{0,5}"
PROJECT_PATTERN = rf"^{_PROJECT}\Z"
# Control characters, MediaWiki's illegal title characters, and white space at either end.
TITLE_PATTERN = r"^(?!\s)[^\x00-\x1f\x7f#<>\[\]|{}]*(?<!\s)\Z"

PROJECT_RE = re.compile(PROJECT_PATTERN)
TITLE_RE = re.compile(TITLE_PATTERN)
SNAPSHOT_RE = re.compile(rf"^({_PROJECT})_namespace_({_NAMESPACE})\Z")
CHUNK_RE = re.compile(rf"^({_PROJECT}_namespace_(?:{_NAMESPACE}))_chunk_(0|[1-9][0-9]{{0,6}})\Z")
SHARD_RE = re.compile(rf"^({_PROJECT}_namespace_(?:{_NAMESPACE}))_shard_(0|[1-9][0-9]{{0,6}})\Z")
_DIGITS = re.compile(r"^[0-9]{1,18}\Z")  # ASCII only: str.isdigit() accepts "²" and "٣"

# --- msgspec constrained types (decode-time checks) --------------------------------------------
ProjectId = Annotated[str, msgspec.Meta(pattern=PROJECT_PATTERN, min_length=1, max_length=63)]
NamespaceId = Annotated[int, msgspec.Meta(ge=0, le=MAX_NAMESPACE)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE, pattern=TITLE_PATTERN)]
PageId = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE)]
RevId = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE)]  # sizes, counts, optional ids (0 = none)
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


# --- checks of strings that arrive outside a decoder ----------------------------------------------


def check_project(project: str) -> str:
    if not isinstance(project, str) or not PROJECT_RE.match(project):
        raise InvalidIdentifier(f"invalid project (wiki) id {str(project)[:80]!r}",
                                identifier=str(project)[:80])
    return project


def check_namespace(namespace: int) -> int:
    if isinstance(namespace, bool) or not isinstance(namespace, int) \
            or not 0 <= namespace <= MAX_NAMESPACE:
        raise InvalidIdentifier(f"invalid namespace {namespace!r}")
    return namespace


def check_title(title: str) -> str:
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE \
            or not TITLE_RE.match(title):
        raise InvalidIdentifier(f"invalid page title {str(title)[:80]!r}")
    return title


def check_snapshot_identifier(identifier: str) -> str:
    if not isinstance(identifier, str) or not SNAPSHOT_RE.match(identifier):
        raise InvalidIdentifier(
            f"invalid snapshot identifier {str(identifier)[:80]!r}: it must look like "
            "{wiki}_namespace_{n}", identifier=str(identifier)[:80])
    return identifier


def parse_snapshot_identifier(identifier: str) -> tuple[str, int]:
    """``{wiki}_namespace_{n}`` -> ``(wiki, n)``; anything else is an ``InvalidIdentifier``."""
    m = SNAPSHOT_RE.match(check_snapshot_identifier(identifier))
    assert m is not None  # checked against the same pattern
    return m.group(1), int(m.group(2))


def snapshot_identifier(project: str, namespace: int) -> str:
    return f"{check_project(project)}_namespace_{check_namespace(namespace)}"


def check_chunk_identifier(identifier: str) -> str:
    if not isinstance(identifier, str) or not CHUNK_RE.match(identifier):
        raise InvalidIdentifier(f"invalid chunk identifier {str(identifier)[:80]!r}")
    return identifier


def check_shard_identifier(identifier: str) -> str:
    """A Parquet shard ``{snapshot}_shard_{n}`` (its file is that plus ``.parquet``)."""
    if not isinstance(identifier, str) or not SHARD_RE.match(identifier):
        raise InvalidIdentifier(f"invalid shard identifier {str(identifier)[:80]!r}")
    return identifier


def ascii_index(text: str) -> int | None:
    """``text`` as a non-negative integer when it is 1-18 ASCII digits, else None."""
    return int(text) if _DIGITS.match(text) else None
