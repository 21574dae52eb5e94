"""Dump ingest + snapshot build throughput, as ratios to bare mwxml iteration in the same run.

Inputs, made in a temp folder: a generated ~30 MB XML dump (``feedserver.demo.dump`` pages) written
as ONE bz2 file, as ``PARTS`` bz2 files (contiguous page ranges, like Wikimedia's split dumps)
and as ONE multistream bz2 (header stream, streams of 100 pages, footer stream, like
``pages-articles-multistream.xml.bz2``); plus the real enwiki sample from the shared data.

Every line is MB/s of uncompressed XML, best of ``REPEATS``; the rounds interleave the
measurements so that load from other work on the machine hits them alike. The baseline is
bare mwxml (``for page in Dump: for rev in page: rev.text``) reading the stream of
``feedserver.ingest.dumpfile.open_dump``: the same file decompressed by the same means (bz2 in
a background thread) as the build, so the ratio measures only what the build adds.
Targets: 1 worker >= 0.9x, 2 workers >= 1.7x of the baseline, for the zstd NDJSON build alone
(``wme_archives`` off). The ``+ WME tar.gz`` lines are the default build (both formats): their
ratio is to the zstd-only build of the same input, i.e. what the WME archives cost.
"""

from __future__ import annotations

import bz2
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import mwxml

from bench._cpu import tree_cpu
from feedserver.config import Settings, load_settings
from feedserver.demo.dump import SITEINFO, demo_pages
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.ingest.dumpfile import open_dump
from feedserver.storage.blobs import FilesystemBlobStore

ENWIKI = (Path(__file__).resolve().parents[2] / "shared/data/dumps/gensim-4.4.0"
          / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
REPEATS = 3
PARTS = 4
DEMO_PAGES = 9000  # ~30 MB of XML
STREAM_PAGES = 100  # pages per bz2 stream in the multistream file, as Wikimedia's
HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
          'xml:lang="en">\n')


def bare_mwxml(path: Path) -> int:
    chars = 0
    with open_dump(path) as fh:
        for page in mwxml.Dump.from_file(fh):
            for rev in page:
                chars += len(rev.text or "")
    return chars


def write_inputs(folder: Path) -> tuple[float, Path, list[Path], Path]:
    """The demo dump as one bz2 file, as ``PARTS`` files and as one multistream file."""
    head = (HEADER + SITEINFO).encode()
    foot = b"</mediawiki>\n"
    pages = [page.encode() for page in demo_pages(DEMO_PAGES)]
    single = folder / "demo.xml.bz2"
    single.write_bytes(bz2.compress(head + b"".join(pages) + foot, 9))
    parts = []
    step = -(-len(pages) // PARTS)
    for i in range(PARTS):
        target = folder / f"demo-part{i}.xml.bz2"
        target.write_bytes(bz2.compress(head + b"".join(pages[i * step:(i + 1) * step]) + foot,
                                        9))
        parts.append(target)
    multi = folder / "demo-multistream.xml.bz2"
    with multi.open("wb") as out:
        out.write(bz2.compress(head, 9))
        for i in range(0, len(pages), STREAM_PAGES):
            out.write(bz2.compress(b"".join(pages[i:i + STREAM_PAGES]), 9))
        out.write(bz2.compress(foot, 9))
    xml_mb = (len(head) + sum(map(len, pages)) + len(foot)) / 1e6
    return xml_mb, single, parts, multi


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and every process it started, the build
    pool's workers included: ``bench/_cpu.py``)."""
    cpu, start = tree_cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - start, tree_cpu() - cpu


def build(paths: list[Path], settings: Settings, workers: int, *, wme: bool = False
          ) -> Callable[[], object]:
    settings = msgspec.structs.replace(settings, wme_archives=wme)
    blobs = FilesystemBlobStore(settings.blob_root)
    return lambda: build_snapshots(paths, blobs, settings, workers=workers)


def run() -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        xml_mb, single, parts, multi = write_inputs(root)
        # Articles only: Structured Contents (on for namespace 0 by default) are measured by
        # bench/structured_build.py.
        settings = load_settings(env={}, data_dir=str(root / "var"), structured_namespaces=[])
        # (label, MB of XML, function, baseline key, target)
        cases: list[tuple[str, float, Callable[[], object], str | None, float | None]] = [
            ("demo: bare mwxml, 1 bz2 file", xml_mb, lambda: bare_mwxml(single), None, None),
            ("demo: bare mwxml, multistream file", xml_mb, lambda: bare_mwxml(multi), None,
             None),
            ("demo: build, 1 worker, 1 bz2 file", xml_mb, build([single], settings, 1),
             "demo: bare mwxml, 1 bz2 file", 0.9),
            ("demo: build + WME tar.gz, 1 worker", xml_mb,
             build([single], settings, 1, wme=True), "demo: build, 1 worker, 1 bz2 file", None),
            (f"demo: build, 2 workers, {PARTS} bz2 files", xml_mb, build(parts, settings, 2),
             "demo: bare mwxml, 1 bz2 file", 1.7),
            ("demo: build, 2 workers, multistream file", xml_mb, build([multi], settings, 2),
             "demo: bare mwxml, multistream file", 1.7),
            ("demo: build + WME tar.gz, 2 workers, multistream", xml_mb,
             build([multi], settings, 2, wme=True), "demo: build, 2 workers, multistream file",
             None),
        ]
        if ENWIKI.is_file():
            en_mb = len(bz2.decompress(ENWIKI.read_bytes())) / 1e6
            cases += [
                ("enwiki sample: bare mwxml", en_mb, lambda: bare_mwxml(ENWIKI), None, None),
                ("enwiki sample: build, 1 worker", en_mb, build([ENWIKI], settings, 1),
                 "enwiki sample: bare mwxml", 0.9),
                ("enwiki sample: build + WME tar.gz, 1 worker", en_mb,
                 build([ENWIKI], settings, 1, wme=True), "enwiki sample: build, 1 worker", None),
            ]
        best = {label: float("inf") for label, *_ in cases}
        cpu = dict(best)
        for _ in range(REPEATS):  # rounds interleave the cases: shared load hits all alike
            for label, _mb, fn, _base, _target in cases:
                wall, used = timed(fn)
                best[label], cpu[label] = min(best[label], wall), min(cpu[label], used)
    print(f"demo dump: {xml_mb:.1f} MB XML ({DEMO_PAGES} articles + redirects); "
          f"enwiki sample: {ENWIKI.name}")
    print(f"MB/s of XML, best of {REPEATS}; ratio = to bare mwxml over the same input, "
          f"decompressed the same way (open_dump); {os.cpu_count()} CPUs, load average "
          f"before {load[0]:.2f} (other work on the machine skews ratios)")
    print("cpu s = CPU seconds of all threads and worker processes (best run): the work done,")
    print("which other load on the machine disturbs far less than the wall-clock rate")
    width = max(len(label) for label, *_ in cases)
    for label, mb, _fn, base, target in cases:
        rate = mb / best[label]
        work = f"cpu {cpu[label]:5.2f} s"
        if base is None:
            print(f"{label:<{width}} {rate:6.2f} MB/s         {work}  (baseline)")
            continue
        ratio = rate / (mb / best[base])
        verdict = "" if target is None else (
            f"  target >= {target:.1f}x: {'met' if ratio >= target else 'NOT met'}")
        print(f"{label:<{width}} {rate:6.2f} MB/s {ratio:5.2f}x  {work} "
              f"({cpu[label] / cpu[base]:4.2f}x base){verdict}")


if __name__ == "__main__":
    run()
