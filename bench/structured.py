"""Structured Contents build throughput, as ratios to bare mwxml iteration in the same run.

Inputs: the real Greek Wikivoyage sample and the real enwiki sample from the shared data.
Every line is MB/s of uncompressed XML, best of ``REPEATS`` (CPU seconds printed beside it),
rounds interleaved so that load from other work on the machine hits the cases alike:
- baseline: bare mwxml (``for page in Dump: for rev in page: rev.text``) over ``open_dump``;
- ingest: ``read_dump`` alone (namespace 0), what every snapshot build already pays;
- structured build: ``read_dump`` + ``structured_content`` + JSON encoding of each record;
- the parsers we did not choose, over the same namespace-0 wikitext (read once, outside the
  timing, then added to the ingest time so the ratio reads like the build's):
  mwparserfromhell ``parse`` + ``strip_code``; wikitextparser ``parse`` + sections, templates,
  tables, tags and links (what the build needs from it).
Target: structured build, 1 worker, >= 0.5x the baseline.
"""

from __future__ import annotations

import bz2
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import mwparserfromhell
import mwxml
import wikitextparser

from feedserver.ingest.dump import read_dump
from feedserver.ingest.dumpfile import open_dump
from feedserver.ingest.structured import structured_content
from feedserver.models import Article

DUMPS = Path(__file__).resolve().parents[2] / "shared/data/dumps"
INPUTS = {
    "elwikivoyage": DUMPS / "operations-dumps-mwbzutils/sample-pages-articles.xml.bz2",
    "enwiki": DUMPS / "gensim-4.4.0"
    / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
}
REPEATS = 3
TARGET = 0.5
_ENCODER = msgspec.json.Encoder()


def bare_mwxml(path: Path) -> None:
    with open_dump(path) as fh:
        for page in mwxml.Dump.from_file(fh):
            for rev in page:
                _ = rev.text


def ingest(path: Path) -> None:
    _, records = read_dump(path, namespaces={0})
    for _record in records:
        pass


def structured_build(path: Path) -> None:
    info, records = read_dump(path, namespaces={0})
    buffer = bytearray()
    for record in records:
        if isinstance(record, Article):
            result = structured_content(record, namespaces=info.namespaces)
            _ENCODER.encode_into(result.content, buffer)


def wikitexts(path: Path) -> list[str]:
    _, records = read_dump(path, namespaces={0})
    return [r.article_body.wikitext for r in records
            if isinstance(r, Article) and r.article_body and r.article_body.wikitext]


def mwparserfromhell_pass(texts: list[str]) -> None:
    for text in texts:
        mwparserfromhell.parse(text).strip_code()


def wikitextparser_pass(texts: list[str]) -> None:
    for text in texts:
        parsed = wikitextparser.parse(text)
        _ = (parsed.sections, parsed.templates, parsed.tables, parsed.get_tags("ref"),
             parsed.wikilinks)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, start = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - start, _cpu() - cpu


def run() -> None:
    load = os.getloadavg()
    # (label, MB, function, baseline label, added label (its time is added), target)
    cases: list[tuple[str, float, Callable[[], object], str | None, str | None,
                      float | None]] = []
    for wiki, path in INPUTS.items():
        if not path.is_file():
            print(f"{wiki}: {path.name} missing, skipped")
            continue
        mb = len(bz2.decompress(path.read_bytes())) / 1e6
        texts = wikitexts(path)
        base = f"{wiki}: bare mwxml"
        read = f"{wiki}: ingest (read_dump, ns 0)"
        cases += [
            (base, mb, lambda p=path: bare_mwxml(p), None, None, None),
            (read, mb, lambda p=path: ingest(p), base, None, None),
            (f"{wiki}: structured build, 1 worker", mb, lambda p=path: structured_build(p),
             base, None, TARGET),
            (f"{wiki}: ingest + mwparserfromhell", mb,
             lambda t=texts: mwparserfromhell_pass(t), base, read, None),
            (f"{wiki}: ingest + wikitextparser", mb, lambda t=texts: wikitextparser_pass(t),
             base, read, None),
        ]
    best = {label: float("inf") for label, *_ in cases}
    cpu = dict(best)
    for _ in range(REPEATS):  # rounds interleave the cases: shared load hits all alike
        for label, _mb, fn, *_rest in cases:
            wall, used = timed(fn)
            best[label], cpu[label] = min(best[label], wall), min(cpu[label], used)
    print(f"MB/s of XML, best of {REPEATS}; ratio = to bare mwxml over the same file; "
          f"{os.cpu_count()} CPUs, load average before {load[0]:.2f}")
    for label, mb, _fn, base, added, target in cases:
        wall = best[label] + (best[added] if added else 0.0)
        used = cpu[label] + (cpu[added] if added else 0.0)
        rate = mb / wall
        if base is None:
            print(f"{label:<44} {rate:6.2f} MB/s         cpu {used:5.2f} s  (baseline)")
            continue
        ratio = rate / (mb / best[base])
        verdict = "" if target is None else (
            f"  target >= {target:.1f}x: {'met' if ratio >= target else 'NOT met'}")
        print(f"{label:<44} {rate:6.2f} MB/s {ratio:5.2f}x  cpu {used:5.2f} s "
              f"({used / cpu[base]:4.2f}x base){verdict}")


if __name__ == "__main__":
    run()
