"""Content sources: where the consumer gets revision text that an event did not carry.

Real ``mediawiki.page_change`` events carry no text, so the consumer asks a ``ContentSource``
for the wikitext of those revisions. ``ActionApiContentSource`` calls the MediaWiki Action API
(``action=query&prop=revisions&revids=...``) with httpx: timeouts on every request, bounded
retries with backoff on transport errors, 429 and 5xx. Revisions the wiki does not return
(deleted, suppressed: ``texthidden``) are simply absent from the answer, never guessed.

A source that still fails after its retries raises ``Unavailable``; the consumer then retries
the whole batch later instead of publishing articles without their text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import msgspec

from feedserver.errors import Unavailable

MAX_REVIDS = 50  # the Action API's limit per request for ordinary clients


class ContentSource(Protocol):
    async def fetch(self, project: str, base_url: str | None,
                    revisions: Sequence[int]) -> dict[int, str]:
        """Wikitext of the main slot per revision id; missing or hidden revisions are absent."""

    async def close(self) -> None: ...


class NoContentSource:
    """No text source configured: articles keep whatever the events carried."""

    async def fetch(self, project: str, base_url: str | None,
                    revisions: Sequence[int]) -> dict[int, str]:
        return {}

    async def close(self) -> None:
        return None


class StaticContentSource:
    """Texts known in advance (tests, replays from a dump)."""

    def __init__(self, texts: Mapping[tuple[str, int], str]) -> None:
        self.texts = dict(texts)

    async def fetch(self, project: str, base_url: str | None,
                    revisions: Sequence[int]) -> dict[int, str]:
        return {r: self.texts[(project, r)] for r in revisions if (project, r) in self.texts}

    async def close(self) -> None:
        return None


class _Slot(msgspec.Struct):
    content: str | None = None
    texthidden: bool = False


class _Revision(msgspec.Struct):
    revid: int
    slots: dict[str, _Slot] | None = None


class _Page(msgspec.Struct):
    revisions: list[_Revision] | None = None


class _Query(msgspec.Struct):
    pages: list[_Page] | None = None


class _Answer(msgspec.Struct):
    query: _Query | None = None


_DECODER = msgspec.json.Decoder(_Answer)


class ActionApiContentSource:
    """``url`` is the api.php endpoint; it may contain ``{domain}`` and ``{project}`` to reach
    each wiki's own API (``https://{domain}/w/api.php``)."""

    def __init__(self, url: str, *, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, user_agent: str = "feedserver/0.1 (content source)",
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), headers={"User-Agent": user_agent},
            follow_redirects=True)

    def endpoint(self, project: str, base_url: str | None) -> str:
        domain = urlsplit(base_url).netloc if base_url else project
        return self.url.format(domain=domain, project=project)

    async def fetch(self, project: str, base_url: str | None,
                    revisions: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        wanted = sorted(set(revisions))
        for i in range(0, len(wanted), MAX_REVIDS):
            out.update(await self._fetch_batch(self.endpoint(project, base_url),
                                               wanted[i:i + MAX_REVIDS]))
        return out

    async def _fetch_batch(self, url: str, revids: list[int]) -> dict[int, str]:
        params = {
            "action": "query", "prop": "revisions", "revids": "|".join(map(str, revids)),
            "rvslots": "main", "rvprop": "content|ids|timestamp", "format": "json",
            "formatversion": "2",
        }
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.get(url, params=params)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise Unavailable(f"content source {url} answered HTTP {response.status_code}")
            try:
                answer = _DECODER.decode(response.content)
            except msgspec.DecodeError as exc:
                raise Unavailable(f"content source {url} sent an unreadable answer: {exc}") from exc
            return _texts(answer)
        raise Unavailable(f"content source {url} failed after {self.retries + 1} attempts: {last}")

    async def close(self) -> None:
        await self._client.aclose()


def _texts(answer: _Answer) -> dict[int, str]:
    out: dict[int, str] = {}
    for page in (answer.query.pages or []) if answer.query else []:
        for rev in page.revisions or []:
            main = (rev.slots or {}).get("main")
            if main is not None and main.content is not None and not main.texthidden:
                out[rev.revid] = main.content
    return out


def open_content_source(url: str | None) -> ContentSource:
    return ActionApiContentSource(url) if url else NoContentSource()
