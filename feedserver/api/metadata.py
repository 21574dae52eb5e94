"""Metadata endpoints: ``/v2/projects``, ``/v2/languages``, ``/v2/namespaces``, ``/v2/codes``.

Projects and languages are derived from the published snapshots (their manifests' ``is_part_of``
and ``in_language``), listing only projects with at least one snapshot the caller's plan covers.
Codes and namespaces come from small static tables (the WME sets). GET or POST, with
``fields``; the list forms also take ``filters``; NDJSON with ``Accept: application/x-ndjson``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from feedserver.accounts.models import Principal
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed
from feedserver.api.fields import PathSet, check_paths
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import Query, project, read_query, render_list, render_one, select
from feedserver.api.services import Billing
from feedserver.errors import NotFound, SnapshotNotFound
from feedserver.identifiers import parse_snapshot_identifier

FEED: Final = "metadata"
_ERRORS = problem_specs(400, 401, 404, 413, 422, 429)


class CodeView(msgspec.Struct, kw_only=True):
    identifier: str
    name: str
    description: str


class NamespaceView(msgspec.Struct, kw_only=True):
    identifier: int
    name: str
    description: str


class LanguageRef(msgspec.Struct, kw_only=True):
    identifier: str


class ProjectView(msgspec.Struct, kw_only=True, omit_defaults=True):
    identifier: str
    name: str | None = None
    url: str | None = None
    code: str
    in_language: LanguageRef | None = None


class LanguageView(msgspec.Struct, kw_only=True, omit_defaults=True):
    identifier: str
    name: str | None = None
    alternate_name: str | None = None
    direction: Literal["ltr", "rtl"] | None = None


def _specs(kind: Any, description: str) -> dict[int, ResponseSpec]:
    return {**_ERRORS, 200: ResponseSpec(kind, description=description,
                                         generate_examples=False)}

CODES: dict[str, tuple[str, str]] = {
    "wiki": ("Wikipedia", "The free encyclopedia"),
    "wiktionary": ("Wiktionary", "The free dictionary"),
    "wikibooks": ("Wikibooks", "Free textbooks and manuals"),
    "wikinews": ("Wikinews", "The free news source"),
    "wikiquote": ("Wikiquote", "Collection of quotations"),
    "wikisource": ("Wikisource", "The free library"),
    "wikivoyage": ("Wikivoyage", "The free travel guide"),
    "wikiversity": ("Wikiversity", "Free learning resources"),
}
NAMESPACES: dict[int, tuple[str, str]] = {
    0: ("Article", "Encyclopedic and content pages"),
    6: ("File", "Media file description pages"),
    10: ("Template", "Reusable wikitext included in other pages"),
    14: ("Category", "Pages grouping other pages"),
}
# Names of languages we are likely to publish; others are listed by code only.
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "en": ("English", "English", "ltr"), "simple": ("Simple English", "Simple English", "ltr"),
    "de": ("German", "Deutsch", "ltr"), "fr": ("French", "français", "ltr"),
    "es": ("Spanish", "español", "ltr"), "it": ("Italian", "italiano", "ltr"),
    "nl": ("Dutch", "Nederlands", "ltr"), "pt": ("Portuguese", "português", "ltr"),
    "el": ("Greek", "Ελληνικά", "ltr"), "ru": ("Russian", "русский", "ltr"),
    "ja": ("Japanese", "日本語", "ltr"), "zh": ("Chinese", "中文", "ltr"),
    "ar": ("Arabic", "العربية", "rtl"), "he": ("Hebrew", "עברית", "rtl"),
    "fa": ("Persian", "فارسی", "rtl"), "cy": ("Welsh", "Cymraeg", "ltr"),
    "id": ("Indonesian", "Bahasa Indonesia", "ltr"),
}


# The paths ``fields``/``filters`` may name are those of the documented response structs.
PATHS: dict[str, PathSet] = {
    "codes": PathSet.of(CodeView), "namespaces": PathSet.of(NamespaceView),
    "languages": PathSet.of(LanguageView), "projects": PathSet.of(ProjectView),
}


def code_of(wiki: str) -> str:
    for code in sorted(CODES, key=len, reverse=True):
        if wiki.endswith(code):
            return code
    return "wiki"


def language_view(identifier: str) -> dict[str, Any]:
    out: dict[str, Any] = {"identifier": identifier}
    if identifier in LANGUAGES:
        name, alternate, direction = LANGUAGES[identifier]
        out.update(name=name, alternate_name=alternate, direction=direction)
    return out


def _catalog(store: Snapshots, principal: Principal) -> list[dict[str, Any]]:
    """Projects (WME shape) with at least one snapshot the principal may read."""
    projects: dict[str, dict[str, Any]] = {}
    for identifier in sorted(store.identifiers()):
        wiki, ns = parse_snapshot_identifier(identifier)
        if wiki in projects or not allowed(principal, "snapshots", wiki, ns):
            continue
        try:
            m = store.manifest(identifier)
        except SnapshotNotFound:
            continue
        view: dict[str, Any] = {"identifier": wiki}
        if m.is_part_of.name:
            view["name"] = m.is_part_of.name
        if m.is_part_of.url:
            view["url"] = m.is_part_of.url
        view["code"] = code_of(wiki)
        lang = m.in_language or m.is_part_of.in_language
        if lang is not None:
            view["in_language"] = {"identifier": lang.identifier}
        projects[wiki] = view
    return list(projects.values())


async def _respond(request: Request[Any, Any, Any], principal: Principal, billing: Billing,
                   items: list[Any], query: Query, ident: str | None, what: str) -> Response[bytes]:
    headers = await billing.admit(principal, FEED)
    if ident is None:
        selected = select(items, query)
        response = render_list(request, selected, headers)
    else:
        found = [i for i in items if str(i["identifier"]) == ident]
        if not found:
            raise NotFound(f"{what} {ident[:100]!r} not found")
        response = render_one(project(found[0], query.fields), headers)
    billing.report(request, principal, feed=FEED, project=None,
                   bytes_sent=len(response.content))
    return response


Items = Callable[[Snapshots, Principal], Awaitable[list[Any]]]


def _routes(what: str, items: Items, kind: type[msgspec.Struct]) -> list[Any]:
    """``/{what}`` (list) and ``/{what}/{identifier}`` (one) over ``items``."""
    async def listing(request: Request[Any, Any, Any], principal: PrincipalDep,
                      snapshots: Injected[Snapshots], billing: Injected[Billing]
                      ) -> Response[bytes]:
        query = check_paths(await read_query(request), PATHS[what])
        return await _respond(request, principal, billing, await items(snapshots, principal),
                              query, None, what)

    async def one(request: Request[Any, Any, Any], principal: PrincipalDep,
                  snapshots: Injected[Snapshots], billing: Injected[Billing],
                  identifier: FromPath[str]) -> Response[bytes]:
        query = check_paths(await read_query(request), PATHS[what])
        return await _respond(request, principal, billing, await items(snapshots, principal),
                              query, identifier, what)

    return [
        route(f"/{what}", http_method=["GET", "POST"], dependencies=PRINCIPAL, status_code=200,
              responses=_specs(list[kind], f"Every {what[:-1]} (JSON or NDJSON)"),  # type: ignore[valid-type]
              name=f"{what}-list")(listing),
        route(f"/{what}/{{identifier:str}}", http_method=["GET", "POST"], status_code=200,
              dependencies=PRINCIPAL, responses=_specs(kind, f"One {what[:-1]}"),
              name=f"{what}-one")(one),
    ]


def _static(what: str, fixed: list[dict[str, Any]], kind: type[msgspec.Struct]) -> list[Any]:
    async def items(snapshots: Snapshots, principal: Principal) -> list[Any]:
        return fixed

    return _routes(what, items, kind)


def _derived(what: str, kind: type[msgspec.Struct]) -> list[Any]:
    async def items(snapshots: Snapshots, principal: Principal) -> list[Any]:
        projects = await anyio.to_thread.run_sync(_catalog, snapshots, principal)
        if what == "projects":
            return projects
        langs = sorted({p["in_language"]["identifier"] for p in projects if "in_language" in p})
        return [language_view(lang) for lang in langs]

    return _routes(what, items, kind)


def router() -> Router:
    codes = [{"identifier": k, "name": n, "description": d} for k, (n, d) in CODES.items()]
    namespaces = [{"identifier": k, "name": n, "description": d}
                  for k, (n, d) in NAMESPACES.items()]
    return Router("/v2", route_handlers=[
        *_static("codes", codes, CodeView), *_static("namespaces", namespaces, NamespaceView),
        *_derived("projects", ProjectView), *_derived("languages", LanguageView),
    ], tags=["metadata"])
