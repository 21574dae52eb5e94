"""On-demand Structured Contents: ``GET|POST /v2/structured-contents/{name}`` (WME's name).

The latest revision of the article in every project that has that title (the state store, as
``/v2/articles/{name}``), parsed into its ``StructuredContent`` record when asked for
(``ingest.structured``: the same parser the snapshot build runs). Everything else is on-demand's
machinery (``api.ondemand``): titles with ``/``, ``limit`` (3 by default and when <= 0, at most
10), ``is_part_of`` / ``in_language`` filters choosing the projects, other filters tested on
each record, ``fields``.

Entitlement: the plan feed ``structured_contents``, checked before admission (a plan without it
gets a 403 and uses no quota), then per project and namespace like on-demand. Usage: an
admitted lookup is an on-demand lookup (feed ``ondemand``: the ``ondemand_lookups`` quota and
its price), as WME counts its on-demand API, found or not. Each page parsed is counted in
``feedserver_structured_pages`` / ``feedserver_structured_problems`` (source ``ondemand``).
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Router, route
from litestar.openapi import ResponseSpec

from feedserver.api import ondemand
from feedserver.api.auth import PRINCIPAL, PrincipalDep, entitle
from feedserver.api.fields import STRUCTURED_PATHS, check_paths
from feedserver.api.params import ArticleName
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import ArticleState, Injected
from feedserver.api.query import EncodedResponse, Query, read_query
from feedserver.api.services import Billing
from feedserver.feeds.snapshots.structured import Outcome
from feedserver.ingest.structured import StructuredContent, structured_content
from feedserver.metrics import Metrics
from feedserver.models import Article

FEED: Final = "structured_contents"
# WME's early beta names of two fields: asking for them gives the fields they became (the
# SDK's own examples still ask for ``infobox`` and ``article_sections``).
FIELD_ALIASES: Final = {"infobox": "infoboxes", "article_sections": "sections"}


def with_aliases(query: Query) -> Query:
    """``query`` with the beta field names (``infobox``, ``article_sections.*``...) renamed."""
    fields = []
    for path in query.fields:
        head, dot, rest = path.partition(".")
        fields.append(FIELD_ALIASES.get(head, head) + dot + rest)
    return msgspec.structs.replace(query, fields=fields)


class Parser:
    """Articles to Structured Contents dicts, the parse outcome counted as it goes."""

    def __init__(self) -> None:
        self.outcome = Outcome()

    def __call__(self, article: Article) -> dict[str, Any]:
        result = structured_content(article)
        self.outcome.add(article.namespace.identifier, result)
        data: dict[str, Any] = msgspec.to_builtins(result.content)
        return data


@route("/{name:path}", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses={**problem_specs(400, 401, 403, 404, 413, 422, 429),
                  200: ResponseSpec(list[StructuredContent], generate_examples=False,
                                    description="The article's Structured Contents in each "
                                                "entitled project")})
async def lookup_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                            article_state: Injected[ArticleState], billing: Injected[Billing],
                            metrics: Injected[Metrics], name: ArticleName) -> EncodedResponse:
    """Structured Contents of the latest revision of ``name`` in every project that has it;
    ``fields``, ``filters``, ``limit`` (default 3, at most 10)."""
    entitle(principal, FEED)
    query = check_paths(with_aliases(await read_query(request)), STRUCTURED_PATHS)
    lookup = ondemand.read_lookup(query, name)
    headers = await billing.admit(principal, ondemand.FEED, lookup.wiki)
    parser = Parser()
    try:
        found = await anyio.to_thread.run_sync(ondemand.find, article_state, principal, FEED,
                                               lookup, parser)
    finally:
        parser.outcome.count(metrics, "ondemand")
    return ondemand.answer(request, principal, billing, lookup, found, headers)


def router() -> Router:
    return Router("/v2/structured-contents", route_handlers=[lookup_structured],
                  tags=["structured contents"])
