"""What the parser must know about one wiki: infobox template names, localized namespace
prefixes for files and categories, its link trail, its base URL.

``DEFAULT_INFOBOX_NAMES`` maps a wiki id to the template names that mark an infobox there; a
name matches the template with that name or any name that continues it after a space
(``Infobox`` matches ``Infobox settlement``), case-insensitively on the first letter as
MediaWiki titles are. Callers may pass their own list per wiki.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

_ENWIKI_INFOBOXES = ("Infobox", "Taxobox", "Automatic taxobox", "Speciesbox", "Subspeciesbox",
                     "Chembox", "Drugbox", "Geobox")
_WIKIVOYAGE_INFOBOXES = ("Quickbar", "Climate", "Infobox")
DEFAULT_INFOBOX_NAMES: dict[str, tuple[str, ...]] = {
    "enwiki": _ENWIKI_INFOBOXES,
    "simplewiki": _ENWIKI_INFOBOXES,
    "enwikivoyage": _WIKIVOYAGE_INFOBOXES,
    "elwikivoyage": (*_WIKIVOYAGE_INFOBOXES, "Κουτί πληροφοριών"),
    "elwiki": ("Κουτί πληροφοριών", "Infobox", "Taxobox"),
    "dewiki": ("Infobox",),
    "frwiki": ("Infobox",),
    "commonswiki": ("Information", "Infobox"),
}
FALLBACK_INFOBOX_NAMES: tuple[str, ...] = ("Infobox",)

# Canonical names MediaWiki accepts on every wiki, and known aliases of the shared wikis.
_FILE_PREFIXES = ("file", "image", "media", "αρχείο", "εικόνα", "μέσο")
_CATEGORY_PREFIXES = ("category", "κατηγορία")
_FILE, _MEDIA, _CATEGORY = 6, -2, 14
# MediaWiki's $linkTrail: letters glued after ]] join the link's text.
_LINK_TRAILS = {
    "el": "[a-z\u03b1-\u03c9\u03ac-\u03af\u03cc-\u03ce\u0390\u03b0\u03ca\u03cb]*",
    "de": "[a-z\u00e4\u00f6\u00fc\u00df]*",
    "fr": "[a-z\u00e0\u00e2\u00e7\u00e9\u00e8\u00ea\u00ee\u00f4\u00fb\u00e4\u00eb\u00ef"
          "\u00f6\u00fc\u00f9]*",
}
_DEFAULT_TRAIL = "[a-z]*"
_URL_CACHE = 100_000
TEXT_CACHE = 50_000  # entries per text cache; a full cache takes no more
_URL_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in '%?"<>[]{}|\\^`#'})
# (str.translate with a mapping costs ~500 instructions a character: only when needed)
_URL_UNSAFE = re.compile(r'[%?"<>\[\]{}|\\^`#]')


class WikiProfile:
    """Compiled per-wiki rules; built once per distinct wiki by ``profile_for``."""

    def __init__(self, base_url: str, language: str, infobox_names: Sequence[str],
                 namespaces: Mapping[int, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.language = language
        files = set(_FILE_PREFIXES)
        categories = set(_CATEGORY_PREFIXES)
        for key, name in namespaces.items():
            if name and key in (_FILE, _MEDIA):
                files.add(name.casefold())
            elif name and key == _CATEGORY:
                categories.add(name.casefold())
        self.file_prefixes = frozenset(files)
        self.category_prefixes = frozenset(categories)
        names = "|".join(_title_pattern(n) for n in sorted(infobox_names, key=len, reverse=True)
                         if n.strip())
        self._infobox = re.compile(rf"^(?:{names})(?: .*)?$", re.S) if names else None
        self.link_trail = _LINK_TRAILS.get(language, _DEFAULT_TRAIL)
        self._urls: dict[str, str] = {}  # link targets recur across a wiki's pages
        # template name as written -> (what it leaves, key): filled by ``templates``
        self.template_kinds: dict[str, tuple[str, str]] = {}
        # Plain values of fragments that leave nothing else on the page (no link, citation
        # or problem): heading names and link texts recur on a wiki's pages. Text as
        # written -> value; filled by ``inline`` up to ``TEXT_CACHE`` entries. (Citation
        # parameters recur too rarely: the misses cost more than the hits save.)
        self.heading_texts: dict[str, str] = {}
        self.link_texts: dict[str, str] = {}
        # A wikilink's inside as written ("Target|label") -> (url, text before the trail), or
        # ("", "") for a category or interlanguage link (it leaves only its trail): the same
        # links recur on a wiki's pages. Filled by ``inline`` up to ``TEXT_CACHE`` entries.
        self.wikilinks: dict[str, tuple[str, str]] = {}

    def is_infobox(self, name: str) -> bool:
        return self._infobox is not None and self._infobox.match(name) is not None

    def page_url(self, title: str) -> str:
        """``{base}/wiki/{Title}`` as WME writes part links: spaces as underscores, letters
        unescaped (``Valérie_Plante``), only characters that would break a URL escaped;
        ``title`` may carry a ``#fragment``."""
        found = self._urls.get(title)
        if found is not None:
            return found
        page, hashmark, fragment = title.partition("#")
        page = "_".join(page.split())
        page = page[:1].upper() + page[1:]
        if _URL_UNSAFE.search(page):
            page = page.translate(_URL_ESCAPES)
        url = f"{self.base_url}/wiki/{page}"
        if hashmark:
            url += "#" + "_".join(fragment.split()).translate(_URL_ESCAPES)
        if len(self._urls) >= _URL_CACHE:
            self._urls.clear()
        self._urls[title] = url
        return url


def _title_pattern(name: str) -> str:
    """Regex for a template name: first letter either case, spaces and underscores alike."""
    name = name.strip().replace("_", " ")
    first = re.escape(name[0])
    if name[0].upper() != name[0].lower():
        first = f"[{re.escape(name[0].upper())}{re.escape(name[0].lower())}]"
    return first + re.escape(name[1:]).replace(r"\ ", " ")


def default_infobox_names(wiki: str) -> tuple[str, ...]:
    return DEFAULT_INFOBOX_NAMES.get(wiki, FALLBACK_INFOBOX_NAMES)


@functools.lru_cache(maxsize=64)
def _cached(base_url: str, language: str, infobox_names: tuple[str, ...],
            namespaces: tuple[tuple[int, str], ...]) -> WikiProfile:
    return WikiProfile(base_url, language, infobox_names, dict(namespaces))


# The last profile asked for, with its arguments: a build asks for the same wiki's profile
# on every page, and comparing the namespace names costs a fifth of sorting them into a key.
_last: list[tuple[tuple[str, str, tuple[str, ...]], dict[int, str], WikiProfile]] = []


def profile_for(*, base_url: str, language: str, infobox_names: Sequence[str],
                namespaces: Mapping[int, str] | None = None) -> WikiProfile:
    """The (cached) profile of a wiki."""
    key = (base_url, language, tuple(infobox_names))
    if _last and _last[0][0] == key and _last[0][1] == (namespaces or {}):
        return _last[0][2]
    names = dict(namespaces or {})  # a copy: the caller's mapping may change later
    found = _cached(*key, tuple(sorted(names.items())))
    _last[:] = [(key, names, found)]
    return found
