"""On-demand lookups: ``GET|POST /v2/articles/{name}``.

Returns the latest revision of the article in every project that has that title (from the
state store), limited to projects the caller's plan covers for the ``ondemand`` feed. As WME:

* ``name`` is everything after ``/v2/articles/`` (WME's ``*name`` route): titles may contain
  ``/``; spaces and underscores are the same title;
* ``limit`` defaults to 3, is at most 10 (422 above) and 3 when zero or negative;
* ``is_part_of.identifier`` and ``in_language.identifier`` select which projects are searched
  (a project's language is its articles' ``in_language``, else the one its dbname implies);
  every other filter is an exact-match test on each article found.

Quota and billing follow one rule: every lookup that passed admission counts once as an
``ondemand_lookups`` quota unit AND as one billed ``ondemand`` request, 404 included. Requests
refused before admission (bad parameters, two ``is_part_of`` filters, 401/403/429) count in
neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Router, route
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal
from feedserver.api.auth import allowed, authenticate
from feedserver.api.fields import ARTICLE_PATHS, check_paths
from feedserver.api.params import ArticleName
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import ArticleState, Injected
from feedserver.api.query import (
    EncodedResponse,
    Filter,
    Query,
    encoded_list,
    matches,
    project,
    read_query,
)
from feedserver.api.services import Billing, Lookups
from feedserver.errors import InvalidParameter, NotFound
from feedserver.identifiers import check_title
from feedserver.ingest.siteinfo import language_of
from feedserver.models import Article
from feedserver.plans import ProductFeed

FEED: Final = "ondemand"
DEFAULT_LIMIT = 3
MAX_LIMIT = 10
# Candidates fetched before entitlement and filters thin them out (one per project at most).
CANDIDATES = 200
# Filters that choose the projects searched rather than test the articles found (WME).
PROJECT_FILTERS = ("is_part_of.identifier", "in_language.identifier")


def check_name(name: str) -> str:
    """A legal MediaWiki title (the rule events are decoded with), else 422."""
    return check_title(name)


def effective_limit(limit: int | None) -> int:
    """WME's on-demand ``limit``: 3 by default and when <= 0; more than 10 is a 422."""
    if limit is not None and limit > MAX_LIMIT:
        raise InvalidParameter(f"limit cannot be greater than {MAX_LIMIT}")
    return DEFAULT_LIMIT if limit is None or limit <= 0 else limit


def _selector(filters: list[Filter], field: str) -> str | None:
    """The value the first filter on ``field`` asks for (WME reads only the first)."""
    return next((str(f.value) for f in filters if f.field == field), None)


def language(article: Article) -> str | None:
    if article.in_language is not None:
        return article.in_language.identifier
    return language_of(article.is_part_of.identifier)


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """What one on-demand request asks for: the title, how many, where, and what to keep."""

    name: str
    limit: int
    wiki: str | None  # the ``is_part_of.identifier`` filter: the one project searched
    lang: str | None  # the ``in_language.identifier`` filter: the projects searched
    filters: list[Filter]  # the other filters, tested on each record found
    fields: list[str]


def read_lookup(query: Query, name: str) -> Lookup:
    """The lookup a checked ``query`` asks for (``limit`` and title checked: 422)."""
    filters = query.filters
    return Lookup(name=check_name(name.removeprefix("/")), limit=effective_limit(query.limit),
                  wiki=_selector(filters, "is_part_of.identifier"),
                  lang=_selector(filters, "in_language.identifier"),
                  filters=[f for f in filters if f.field not in PROJECT_FILTERS],
                  fields=query.fields)


def entitled(articles: Iterable[Article], principal: Principal, feed: ProductFeed,
             lookup: Lookup) -> Iterator[Article]:
    """Those of ``articles`` (named ``lookup.name``) in the projects the plan covers for
    ``feed`` and in the language asked for, before filters (pure)."""
    for article in articles:
        if not allowed(principal, feed, article.is_part_of.identifier,
                       article.namespace.identifier):
            continue
        if lookup.lang is not None and language(article) != lookup.lang:
            continue
        yield article


def read(article_state: ArticleState, lookup: Lookup) -> list[Article]:
    """The live articles named ``lookup.name`` (in ``lookup.wiki`` when asked). Blocking: a
    worker thread's job, unless ``article_state.local_reads``."""
    projects = [lookup.wiki] if lookup.wiki else None
    return article_state.find_by_name(lookup.name, projects, limit=CANDIDATES)


def candidates(article_state: ArticleState, principal: Principal, feed: ProductFeed,
               lookup: Lookup) -> Iterator[Article]:
    """The articles named ``lookup.name`` in the projects the plan covers for ``feed`` (and
    in the language asked for), before filters. Blocking: call it in a worker thread."""
    return entitled(read(article_state, lookup), principal, feed, lookup)


def find(article_state: ArticleState, principal: Principal, feed: ProductFeed, lookup: Lookup,
         view: Callable[[Article], dict[str, Any]] = msgspec.to_builtins
         ) -> list[dict[str, Any]]:
    """At most ``lookup.limit`` records of ``lookup.name`` from the projects the plan covers
    for ``feed``: ``view`` of each article (the article itself by default), filtered, then
    projected to the fields asked for. Blocking: call it in a worker thread."""
    return select(candidates(article_state, principal, feed, lookup), lookup, view)


def select(found: Iterable[Article], lookup: Lookup,
           view: Callable[[Article], dict[str, Any]] = msgspec.to_builtins
           ) -> list[dict[str, Any]]:
    """At most ``lookup.limit`` of ``view`` of each of ``found`` that passes the filters,
    projected to the fields asked for (pure)."""
    out = []
    for article in found:
        data = view(article)
        if matches(data, lookup.filters):
            out.append(project(data, lookup.fields))
        if len(out) >= lookup.limit:
            break
    return out


def find_records(article_state: ArticleState, principal: Principal, feed: ProductFeed,
                 lookup: Lookup) -> list[Article] | list[dict[str, Any]]:
    """``find``; without filters or fields, the articles themselves (msgspec encodes a struct
    to the same JSON as its ``to_builtins`` dict, without building the dict first)."""
    return records(candidates(article_state, principal, feed, lookup), lookup)


def records(found: Iterator[Article], lookup: Lookup) -> list[Article] | list[dict[str, Any]]:
    """At most ``lookup.limit`` of the entitled articles ``found``, filtered and projected
    (pure)."""
    if lookup.filters or lookup.fields:
        return select(found, lookup)
    return list(islice(found, lookup.limit))


async def lookup_records(lookups: Lookups, principal: Principal, lookup: Lookup
                         ) -> list[Article] | list[dict[str, Any]]:
    """``find_records``, from where it is cheapest: SQLite inline (one indexed read costs
    less than the worker-thread hop, which costs milliseconds on a loaded machine); remote
    state (PostgreSQL) on the event loop from the process's cache or one round trip
    (``RemoteState``: docs/api.md has the staleness bound); a worker thread otherwise."""
    state, remote = lookups.state, lookups.remote
    if state.local_reads:
        return find_records(state, principal, FEED, lookup)
    if remote is None:
        return await anyio.to_thread.run_sync(find_records, state, principal, FEED, lookup)
    articles = await remote.find_by_name(lookup.name, lookup.wiki, limit=CANDIDATES)
    return records(entitled(articles, principal, FEED, lookup), lookup)


def answer(request: Request[Any, Any, Any], principal: Principal, billing: Billing,
           lookup: Lookup, found: Sequence[Article | dict[str, Any]], headers: dict[str, str]
           ) -> EncodedResponse:
    """The answer to an admitted lookup, billed once as an ``ondemand`` request, found or not
    (404 when nothing was)."""
    if not found:
        # One rule for quota and billing: every ADMITTED lookup counts once in both, found or
        # not (admission already took its quota unit; the lookup did the work).
        billing.report(request, principal, feed=FEED, project=lookup.wiki)
        raise NotFound(f"article {lookup.name[:100]!r} not found")
    response = encoded_list(request, found, headers)
    billing.report(request, principal, feed=FEED, project=lookup.wiki,
                   bytes_sent=len(response.body), articles=len(found))
    return response


@route("/{name:path}", http_method=["GET", "POST"], status_code=200,
       responses={**problem_specs(400, 401, 404, 413, 422, 429),
                  200: ResponseSpec(list[Article], generate_examples=False,
                                    description="The article in each entitled project")})
async def lookup_article(request: Request[Any, Any, Any], lookups: Injected[Lookups],
                         name: ArticleName) -> EncodedResponse:
    """Latest revision of ``name`` in every project that has it; ``fields``, ``filters``,
    ``limit`` (default 3, at most 10)."""
    # One dependency, authentication called here: litestar would resolve a principal beside
    # the services in a task group (docs/api.md, "Benchmark"). The same 401 first, then 4xx.
    principal = await authenticate(request, lookups.accounts)
    lookup = read_lookup(check_paths(await read_query(request), ARTICLE_PATHS), name)
    billing = lookups.billing
    headers = await billing.admit(principal, FEED, lookup.wiki)
    found = await lookup_records(lookups, principal, lookup)
    return answer(request, principal, billing, lookup, found, headers)


def router() -> Router:
    return Router("/v2/articles", route_handlers=[lookup_article], tags=["on-demand"])
