"""On-demand lookups: ``GET|POST /v2/articles/{name}``.

Returns the latest revision of the article in every project that has that title (from the
state store), limited to projects the caller's plan covers for the ``ondemand`` feed.
``limit`` defaults to 3, at most 10 (422 above, as WME). ``is_part_of.identifier`` narrows
the projects searched; every other filter (``in_language.identifier`` included) is an
exact-match test on each article found.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec

from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed
from feedserver.api.params import ArticleName
from feedserver.api.problems import problem_specs
from feedserver.api.query import matches, project, read_query, render_list
from feedserver.api.services import services_of
from feedserver.errors import InvalidParameter, NotFound, Unavailable
from feedserver.identifiers import check_title
from feedserver.models import Article

FEED: Final = "ondemand"
DEFAULT_LIMIT = 3
MAX_LIMIT = 10
# Candidates fetched before entitlement and filters thin them out (one per project at most).
CANDIDATES = 200


def check_name(name: str) -> str:
    """A legal MediaWiki title (the rule events are decoded with), else 422."""
    return check_title(name)


@route("/{name:str}", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses={**problem_specs(400, 401, 404, 413, 422, 429),
                  200: ResponseSpec(list[Article], generate_examples=False,
                                    description="The article in each entitled project")})
async def lookup_article(request: Request[Any, Any, Any], principal: PrincipalDep,
                         name: ArticleName) -> Response[bytes]:
    """Latest revision of ``name`` in every project that has it; ``fields``, ``filters``,
    ``limit`` (default 3, at most 10)."""
    svc = services_of(request)
    query = await read_query(request)
    limit = DEFAULT_LIMIT if query.limit is None else query.limit
    if limit > MAX_LIMIT:
        raise InvalidParameter(f"limit cannot be greater than {MAX_LIMIT}")
    if limit < 1:
        raise InvalidParameter("limit must be at least 1")
    check_name(name)
    if svc.state is None:
        raise Unavailable("the on-demand state store is not configured")
    projects = sorted({str(f.value) for f in query.filters
                       if f.field == "is_part_of.identifier"})
    if len(projects) > 1:  # ANDed exact matches on one field: nothing can match both
        raise NotFound(f"article {name[:100]!r} not found")
    others = [f for f in query.filters if f.field != "is_part_of.identifier"]
    headers = await svc.admit(principal, FEED, projects[0] if projects else None)
    state = svc.state

    def find() -> list[dict[str, Any]]:
        out = []
        for article in state.find_by_name(name, projects or None, limit=CANDIDATES):
            if not allowed(principal, FEED, article.is_part_of.identifier,
                           article.namespace.identifier):
                continue
            data = msgspec.to_builtins(article)
            if matches(data, others):
                out.append(project(data, query.fields))
            if len(out) >= limit:
                break
        return out

    found = await anyio.to_thread.run_sync(find)
    if not found:
        raise NotFound(f"article {name[:100]!r} not found")
    response = render_list(request, found, headers)
    svc.report(request, principal, feed=FEED, project=projects[0] if projects else None,
               bytes_sent=len(response.content), articles=len(found))
    return response


def router() -> Router:
    return Router("/v2/articles", route_handlers=[lookup_article], tags=["on-demand"])
