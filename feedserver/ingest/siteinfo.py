"""What a dump says about its wiki: project id (dbname), canonical URL, language, namespaces.

Pure functions over the values of ``<siteinfo>`` and the ``<mediawiki>`` root attributes, so
the same wiki gets the same identity whichever dumper (schema 0.3 … 0.11) wrote the file.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import msgspec


class DumpInfo(msgspec.Struct, frozen=True):
    wiki: str
    site_name: str
    base_url: str
    language: str
    namespaces: dict[int, str]
    schema_version: str
    source: str


# Language-subdomain projects: dbname suffix <-> host's second-level domain.
_PROJECTS: dict[str, str] = {
    "wiki": "wikipedia",
    "wiktionary": "wiktionary",
    "wikibooks": "wikibooks",
    "wikinews": "wikinews",
    "wikiquote": "wikiquote",
    "wikisource": "wikisource",
    "wikiversity": "wikiversity",
    "wikivoyage": "wikivoyage",
}
_HOST_TO_SUFFIX = {host: suffix for suffix, host in _PROJECTS.items()}
# Projects without a language subdomain: host <-> dbname.
_SPECIAL_HOSTS: dict[str, str] = {
    "commons.wikimedia.org": "commonswiki",
    "www.wikidata.org": "wikidatawiki",
    "wikidata.org": "wikidatawiki",
    "test.wikidata.org": "testwikidatawiki",
    "meta.wikimedia.org": "metawiki",
    "species.wikimedia.org": "specieswiki",
    "www.mediawiki.org": "mediawikiwiki",
    "incubator.wikimedia.org": "incubatorwiki",
    "wikisource.org": "sourceswiki",
}
_SPECIAL_DBNAMES = {db: host for host, db in _SPECIAL_HOSTS.items() if host != "wikidata.org"}
_WIKIMEDIA_DOMAINS = (*(f"{h}.org" for h in _HOST_TO_SUFFIX), "wikimedia.org", "wikidata.org",
                      "mediawiki.org")
_DBNAME = re.compile(r"^([a-z][a-z0-9_]*?)(" + "|".join(sorted(_PROJECTS, key=len, reverse=True))
                     + r")$")
# MediaWiki's wfUrlencode leaves these readable in page URLs.
_URL_SAFE = ";@$!*(),/~:"


def wiki_from_host(host: str) -> str | None:
    """``en.wikipedia.org`` -> ``enwiki``; None for hosts that are not Wikimedia projects."""
    host = host.lower()
    if host in _SPECIAL_HOSTS:
        return _SPECIAL_HOSTS[host]
    parts = host.split(".")
    if len(parts) == 3 and parts[2] == "org" and parts[1] in _HOST_TO_SUFFIX and parts[0] != "www":
        return parts[0].replace("-", "_") + _HOST_TO_SUFFIX[parts[1]]
    return None


def host_from_wiki(wiki: str) -> str | None:
    """``elwikivoyage`` -> ``el.wikivoyage.org``; None when the dbname is not a known pattern."""
    if wiki in _SPECIAL_DBNAMES:
        return _SPECIAL_DBNAMES[wiki]
    match = _DBNAME.match(wiki)
    if match is None:
        return None
    return f"{match.group(1).replace('_', '-')}.{_PROJECTS[match.group(2)]}.org"


def _is_wikimedia(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in _WIKIMEDIA_DOMAINS)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "wiki"


def derive_info(
    *,
    dbname: str | None,
    base: str | None,
    site_name: str | None,
    xml_lang: str | None,
    namespaces: dict[int, str],
    schema_version: str,
    source: str,
    wiki: str | None = None,
) -> DumpInfo:
    """Identity of the dumped wiki. Canonical Wikimedia URLs win over what the dump says (a
    0.10 dump may say ``http://``, a test install ``http://localhost/...``) so that two dumps
    of one wiki give identical records."""
    parts = urlsplit(base or "")
    host = (parts.hostname or "").lower()
    name = wiki or dbname or wiki_from_host(host) or _slug(host or site_name or "wiki")
    canonical = host_from_wiki(name)
    if host and _is_wikimedia(host):
        base_url = f"https://{host}"
    elif canonical is not None:
        base_url = f"https://{canonical}"
    elif host:
        base_url = f"{parts.scheme or 'https'}://{parts.netloc}"
    else:
        base_url = ""
    language = _language(canonical or host, xml_lang)
    return DumpInfo(
        wiki=name,
        site_name=site_name or name,
        base_url=base_url,
        language=language,
        namespaces=namespaces,
        schema_version=schema_version,
        source=source,
    )


def language_of(wiki: str) -> str | None:
    """The language of a Wikimedia project from its dbname (``elwikivoyage`` -> ``el``,
    ``commonswiki`` -> ``en``); None for a dbname that is not a known pattern."""
    host = host_from_wiki(wiki)
    return None if host is None else _language(host, None)


def _language(host: str, xml_lang: str | None) -> str:
    """The language subdomain (``simple``, ``zh-min-nan``) or else the dump's ``xml:lang``."""
    parts = host.split(".")
    if len(parts) == 3 and parts[1] in _HOST_TO_SUFFIX and parts[0] != "www":
        return parts[0]
    return xml_lang or "en"


def page_url(base_url: str, title: str) -> str:
    """``{base}/wiki/{Title_with_underscores}``, percent-quoted as MediaWiki does."""
    return f"{base_url}/wiki/{quote(title.replace(' ', '_'), safe=_URL_SAFE)}"
