"""A small, self-made MediaWiki dump for demos and examples.

The text is generated here (no real wiki content is copied), but the XML is a faithful export
schema 0.11 document: siteinfo with namespaces, pages in several namespaces, redirects,
categories and templates, multiple revisions, so every stage of the pipeline has something to do.
"""

from __future__ import annotations

import bz2
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

SITEINFO = """  <siteinfo>
    <sitename>Demopedia</sitename>
    <dbname>demowiki</dbname>
    <base>https://demo.wikipedia.org/wiki/Main_Page</base>
    <generator>feedserver demo</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""

_WORDS = (
    "river", "valley", "mountain", "harbour", "village", "market", "bridge", "library", "garden",
    "festival", "orchard", "lighthouse", "railway", "meadow", "castle", "forest", "island",
    "canal", "museum", "school", "quarry", "mill",
)
_TOPICS = ("Geography", "History", "Transport", "Culture", "Nature")


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
    return " ".join(words).capitalize() + "."


def _article_text(rng: random.Random, title: str) -> str:
    topic = rng.choice(_TOPICS)
    lead = " ".join(_sentence(rng) for _ in range(3))
    body = "\n\n".join(" ".join(_sentence(rng) for _ in range(4)) for _ in range(rng.randint(1, 4)))
    return (
        f"{{{{Infobox place|name={title}}}}}\n'''{title}''' is a demo article. {lead}\n\n"
        f"== Overview ==\n{body}\n\n[[Category:{topic}]]\n[[Category:Demo articles]]\n"
    )


def _page(page_id: int, ns: int, title: str, revisions: list[tuple[int, datetime, str]],
          redirect: str | None = None) -> str:
    out = [f"  <page>\n    <title>{escape(title)}</title>\n"
           f"    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"]
    if redirect:
        out.append(f'    <redirect title="{escape(redirect)}" />\n')
    parent = None
    for rev_id, ts, text in revisions:
        size = len(text.encode())
        out.append("    <revision>\n")
        out.append(f"      <id>{rev_id}</id>\n")
        if parent:
            out.append(f"      <parentid>{parent}</parentid>\n")
        out.append(f"      <timestamp>{ts.strftime('%Y-%m-%dT%H:%M:%SZ')}</timestamp>\n")
        out.append("      <contributor>\n        <username>Demo editor</username>\n"
                   "        <id>42</id>\n      </contributor>\n")
        out.append("      <comment>demo edit</comment>\n")
        out.append(f"      <origin>{rev_id}</origin>\n      <model>wikitext</model>\n")
        out.append("      <format>text/x-wiki</format>\n")
        out.append(f'      <text bytes="{size}" xml:space="preserve">{escape(text)}</text>\n')
        out.append("      <sha1>0000000000000000000000000000000</sha1>\n    </revision>\n")
        parent = rev_id
    out.append("  </page>\n")
    return "".join(out)


def demo_pages(count: int, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rev_id = 1000
    yield _page(1, 10, "Template:Infobox place",
                [(rev_id, start, "{| class=\"infobox\"\n| {{{name}}}\n|}")])
    for i in range(count):
        title = f"Demo {rng.choice(_WORDS).capitalize()} {i}"
        revisions = []
        for r in range(rng.randint(1, 3)):
            rev_id += 1
            ts = start + timedelta(days=i, hours=r)
            revisions.append((rev_id, ts, _article_text(rng, title)))
        page_id = 10 + i
        yield _page(page_id, 0, title, revisions)
        if i % 5 == 0:
            rev_id += 1
            yield _page(100_000 + i, 0, f"Alias of {title}",
                        [(rev_id, start, f"#REDIRECT [[{title}]]")], redirect=title)
    for j, topic in enumerate(_TOPICS):
        rev_id += 1
        text = f"Pages about {topic}."
        yield _page(200_000 + j, 14, f"Category:{topic}", [(rev_id, start, text)])


def write_demo_dump(path: Path, pages: int = 200, seed: int = 7) -> Path:
    """Write a bz2 pages-articles dump of ``pages`` generated articles to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
              'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.11/ '
              'http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="en">\n')
    with bz2.open(path, "wt", encoding="utf-8") as out:
        out.write(header)
        out.write(SITEINFO)
        for page in demo_pages(pages, seed):
            out.write(page)
        out.write("</mediawiki>\n")
    return path
