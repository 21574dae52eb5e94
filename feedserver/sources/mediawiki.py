"""MediaWiki Action API client: revisions (text, metadata, visibility) many per request.

``ActionApiClient`` asks ``action=query&prop=revisions`` for up to ``MAX_IDS`` (50, the API's
limit for clients without the bot right) revision ids or titles per request, with:

- at most ``concurrency`` requests in flight per wiki (one semaphore per API endpoint);
- ``maxlag`` on every request, as Wikimedia asks of automated clients; a ``maxlag`` error
  (HTTP 200 with an error code) waits for Retry-After and tries again;
- retries on 429, 503 (and other 5xx), honouring Retry-After, and on network errors and
  timeouts with jittered exponential backoff; bounded by ``retries``, then ``UpstreamError``;
- a User-Agent the caller passes (``Settings.user_agent``);
- a bounded cache (``sources.revcache``) so a replay does not refetch;
- continuation (``continue``) followed when the answer is cut by the API's result size limit.

What the wiki answers becomes ``WikiRevision`` records. A revision hidden since its event
(revision deletion, suppression: ``texthidden``, ``userhidden``, ``commenthidden``) comes back
without the hidden parts and with the matching visibility flags; one the wiki does not know
(``badrevids``: its page was deleted) is simply absent. Neither is an error or a retry.

``fetch`` keeps the shape of ``feeds.content.ContentSource``, so the consumer can switch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import httpx
import msgspec

from feedserver.config import Settings
from feedserver.errors import UpstreamError
from feedserver.ingest.revision import WikiRevision
from feedserver.metrics import Metrics
from feedserver.sources.revcache import MemoryRevisionCache, RevisionCache

log = logging.getLogger(__name__)

MAX_IDS = 50  # revids / titles per request for clients without apihighlimits
MAX_CONTINUATIONS = 100  # answers cut by the result size limit: continue at most this often
MAX_WAIT = 300.0  # longest Retry-After honoured, seconds
_RVPROP = "ids|timestamp|flags|comment|user|userid|size|sha1|contentmodel|content"
Sleep = Callable[[float], Awaitable[None]]


# --- the answer (formatversion=2) -------------------------------------------------------------
# Range-checked like the events: nothing a wiki (or something posing as one) answers can
# overflow SQLite's int64 downstream; an answer out of range is an ``UpstreamError``.
_MAX_SAFE = 9_007_199_254_740_991
_Id = Annotated[int, msgspec.Meta(ge=1, le=_MAX_SAFE)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_SAFE)]
_Namespace = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]



class _Slot(msgspec.Struct):
    content: str | None = None
    contentmodel: str | None = None
    texthidden: bool = False


class _Revision(msgspec.Struct):
    revid: _Id
    parentid: _Count | None = None
    minor: bool = False
    user: str | None = None
    userid: _Count | None = None
    userhidden: bool = False
    timestamp: datetime | None = None
    size: _Count | None = None
    sha1: str | None = None
    comment: str | None = None
    commenthidden: bool = False
    suppressed: bool = False
    slots: dict[str, _Slot] | None = None


class _Page(msgspec.Struct):
    title: str = ""
    pageid: _Id | None = None
    ns: _Namespace = 0
    missing: bool = False
    revisions: list[_Revision] | None = None


class _Normalized(msgspec.Struct, rename={"source": "from"}):
    source: str
    to: str


class _Query(msgspec.Struct):
    pages: list[_Page] | None = None
    normalized: list[_Normalized] | None = None


class _Error(msgspec.Struct):
    code: str = "unknown"
    info: str = ""
    lag: float | None = None


class _Answer(msgspec.Struct):
    query: _Query | None = None
    error: _Error | None = None
    # Continuation parameters are strings ("rvcontinue", "continue").
    continue_: dict[str, str | int] | None = msgspec.field(default=None, name="continue")


_DECODER = msgspec.json.Decoder(_Answer)


def revisions_of(project: str, answer: _Answer) -> list[WikiRevision]:
    """Every revision an answer holds, as records (pure)."""
    out: list[WikiRevision] = []
    for page in (answer.query.pages or []) if answer.query else []:
        if page.pageid is None or page.missing:
            continue
        for rev in page.revisions or []:
            main = (rev.slots or {}).get("main") or _Slot()
            text_visible = not main.texthidden
            out.append(WikiRevision(
                project=project, page_id=page.pageid, namespace=page.ns,
                title=page.title.replace("_", " "), revision=rev.revid,
                parent=rev.parentid or None, timestamp=rev.timestamp,
                user=None if rev.userhidden else rev.user,
                user_id=None if rev.userhidden else rev.userid,
                comment=None if rev.commenthidden else rev.comment, minor=rev.minor,
                size=rev.size if text_visible else None,
                sha1=rev.sha1 if text_visible else None, content_model=main.contentmodel,
                text=main.content if text_visible else None, text_visible=text_visible,
                editor_visible=not rev.userhidden, comment_visible=not rev.commenthidden,
                suppressed=rev.suppressed))
    return out


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), clamped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_WAIT)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    base = now or datetime.now(when.tzinfo)
    return max(0.0, min((when - base).total_seconds(), MAX_WAIT))


class ActionApiClient:
    """``url`` is the api.php endpoint; it may hold ``{domain}`` and ``{project}`` to reach each
    wiki's own API (``https://{domain}/w/api.php``, the domain taken from the event's base URL).
    """

    def __init__(self, url: str, *, user_agent: str, maxlag: int | None = 5,
                 concurrency: int = 2, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 60.0,
                 cache: RevisionCache | None = None, metrics: Metrics | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.url = url
        self.maxlag = maxlag
        self.concurrency = max(1, concurrency)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache: RevisionCache = cache if cache is not None else MemoryRevisionCache()
        self.metrics = metrics
        self._sleep = sleep
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=True, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics | None = None,
                      cache: RevisionCache | None = None) -> ActionApiClient | None:
        """The client ``content_source_url`` names (None when unset), with the settings'
        User-Agent, maxlag, per-wiki concurrency and an in-memory cache of
        ``content_cache_revisions`` revisions unless ``cache`` is given."""
        if not settings.content_source_url:
            return None
        return cls(settings.content_source_url, user_agent=settings.user_agent,
                   maxlag=settings.content_maxlag, concurrency=settings.content_concurrency,
                   cache=cache or MemoryRevisionCache(settings.content_cache_revisions),
                   metrics=metrics)

    def endpoint(self, project: str, base_url: str | None) -> str:
        domain = urlsplit(base_url).netloc if base_url else project
        return self.url.format(domain=domain, project=project)

    # --- ContentSource ----------------------------------------------------------------------

    async def fetch(self, project: str, base_url: str | None,
                    revisions: Sequence[int]) -> dict[int, str]:
        """Wikitext of the main slot per revision id; missing or hidden revisions are absent."""
        found = await self.revisions(project, base_url, revisions)
        return {r: rev.text for r, rev in found.items() if rev.text is not None}

    async def close(self) -> None:
        await self._client.aclose()

    # --- richer answers ---------------------------------------------------------------------

    async def revisions(self, project: str, base_url: str | None,
                        revisions: Iterable[int]) -> dict[int, WikiRevision]:
        """Per revision id, what the wiki says now; ids it does not know are absent."""
        wanted = sorted(set(revisions))
        cached = await self.cache.get_many([(project, r) for r in wanted])
        self._count("cached", len(cached))
        out = {rev: found for (_, rev), found in cached.items()}
        todo = [r for r in wanted if r not in out]
        endpoint = self.endpoint(project, base_url)
        batches = await asyncio.gather(*(
            self._query(project, endpoint, {"revids": "|".join(map(str, todo[i:i + MAX_IDS]))})
            for i in range(0, len(todo), MAX_IDS)))
        asked = set(todo)
        fetched = [rev for batch, _ in batches for rev in batch if rev.revision in asked]
        await self.cache.put_many(fetched)
        out.update((rev.revision, rev) for rev in fetched)
        self._count("fetched", sum(1 for r in fetched if not r.hidden))
        self._count("hidden", sum(1 for r in fetched if r.hidden))
        self._count("missing", len(todo) - len(fetched))
        return out

    async def latest(self, project: str, base_url: str | None,
                     titles: Iterable[str]) -> dict[str, WikiRevision]:
        """Per title (as asked), the page's latest revision; missing pages are absent."""
        wanted = sorted(set(titles))
        endpoint = self.endpoint(project, base_url)
        answers = await asyncio.gather(*(
            self._query_titles(project, endpoint, wanted[i:i + MAX_IDS])
            for i in range(0, len(wanted), MAX_IDS)))
        out: dict[str, WikiRevision] = {}
        for part in answers:
            out.update(part)
        await self.cache.put_many(out.values())
        return out

    async def forget(self, project: str, revisions: Iterable[int]) -> None:
        """Drop cached answers (their visibility changed)."""
        await self.cache.forget([(project, r) for r in revisions])

    async def _query_titles(self, project: str, endpoint: str,
                            titles: list[str]) -> dict[str, WikiRevision]:
        found, normalized = await self._query(project, endpoint, {"titles": "|".join(titles)})
        by_title = {rev.title: rev for rev in found}
        out: dict[str, WikiRevision] = {}
        for title in titles:
            name = normalized.get(title, title).replace("_", " ")
            if name in by_title:
                out[title] = by_title[name]
        return out

    # --- one logical request: batches, continuation, retries -----------------------------------

    async def _query(self, project: str, endpoint: str, selector: dict[str, str]
                     ) -> tuple[list[WikiRevision], dict[str, str]]:
        """All revisions the selector names (following continuation), and the API's title
        normalisations (as sent -> canonical)."""
        params: dict[str, str | int] = {
            "action": "query", "prop": "revisions", "rvslots": "main", "rvprop": _RVPROP,
            "format": "json", "formatversion": 2, **selector}
        if self.maxlag is not None:
            params["maxlag"] = self.maxlag
        out: list[WikiRevision] = []
        normalized: dict[str, str] = {}
        limit = self._limits.setdefault(endpoint, asyncio.Semaphore(self.concurrency))
        for _ in range(MAX_CONTINUATIONS):
            async with limit:
                answer = await self._request(endpoint, params)
            out.extend(revisions_of(project, answer))
            if answer.query and answer.query.normalized:
                normalized.update((n.source, n.to) for n in answer.query.normalized)
            if not answer.continue_:
                return out, normalized
            params = {**params, **{k: str(v) for k, v in answer.continue_.items()}}
        raise UpstreamError(f"{endpoint} kept asking to continue after {MAX_CONTINUATIONS}"
                            " answers", url=endpoint)

    async def _request(self, endpoint: str, params: dict[str, str | int]) -> _Answer:
        last = "no attempt"
        for attempt in range(self.retries + 1):
            wait = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)
            try:
                response = await self._send(endpoint, params)
            except httpx.TransportError as exc:  # connect errors, timeouts, resets
                last = f"{type(exc).__name__}: {exc}"
                await self._retry(endpoint, last, wait, attempt)
                continue
            hint = retry_after(response.headers.get("retry-after"))
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                await self._retry(endpoint, last, max(wait, hint or 0.0), attempt)
                continue
            if response.status_code != 200:
                self._request_result("failed")
                raise UpstreamError(f"{endpoint} answered HTTP {response.status_code}",
                                    url=endpoint, status=response.status_code)
            try:
                answer = _DECODER.decode(response.content)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._request_result("failed")
                raise UpstreamError(f"{endpoint} sent an unreadable answer: {exc}",
                                    url=endpoint) from exc
            if answer.error is not None and answer.error.code == "maxlag":
                last = f"maxlag: {answer.error.info}"
                await self._retry(endpoint, last, max(wait, hint or answer.error.lag or 0.0),
                                  attempt)
                continue
            if answer.error is not None:
                self._request_result("failed")
                raise UpstreamError(f"{endpoint} refused the query: {answer.error.code}: "
                                    f"{answer.error.info[:200]}", url=endpoint)
            self._request_result("ok")
            return answer
        self._request_result("failed")
        raise UpstreamError(f"{endpoint} failed after {self.retries + 1} attempts: {last}",
                            url=endpoint)

    async def _send(self, endpoint: str, params: dict[str, str | int]) -> httpx.Response:
        # Long title lists do not fit in a URL: POST them (the API reads both).
        if len(urlencode(params)) > 2000:
            return await self._client.post(endpoint, data=params)
        return await self._client.get(endpoint, params=params)

    async def _retry(self, endpoint: str, why: str, wait: float, attempt: int) -> None:
        self._request_result("retry")
        if attempt < self.retries:
            log.warning("Action API %s: %s; retrying in %.1fs", endpoint, why, wait)
            await self._sleep(min(wait, MAX_WAIT))

    def _request_result(self, result: str) -> None:
        if self.metrics:
            self.metrics.content_requests.labels(result).inc()

    def _count(self, result: str, n: int) -> None:
        if self.metrics and n:
            self.metrics.content_revisions.labels(result).inc(n)
