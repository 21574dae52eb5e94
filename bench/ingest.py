"""Dump ingest + snapshot build throughput, as ratios to bare mwxml iteration in the same run.

(a) baseline: ``for page in mwxml.Dump: for rev in page: rev.text`` over the bz2 dump;
(b) ``build_snapshots`` with 1 worker on the same dump (parse, convert, encode, compress,
    hash, seal, publish to a filesystem blob store);
(c) ``build_snapshots`` with 2 workers over the same pages split into 4 bz2 files.
Throughput is MB/s of uncompressed XML; each figure is the best of ``REPEATS`` runs.
Targets: (b) >= 0.9x and (c) >= 1.7x of (a).
"""

from __future__ import annotations

import bz2
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mwxml

from feedserver.config import load_settings
from feedserver.feeds.snapshots import build_snapshots
from feedserver.storage.blobs import FilesystemBlobStore

DUMP = (Path(__file__).resolve().parents[2] / "shared/data/dumps/gensim-4.4.0"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
REPEATS = 3
PARTS = 4


def bare_mwxml(path: Path) -> int:
    chars = 0
    with bz2.open(path, "rb") as fh:
        for page in mwxml.Dump.from_file(fh):
            for rev in page:
                chars += len(rev.text or "")
    return chars


def split_dump(path: Path, folder: Path, parts: int) -> list[Path]:
    """The dump's pages dealt round-robin into ``parts`` bz2 files with the same header."""
    text = bz2.decompress(path.read_bytes())
    first = text.index(b"<page>")
    head = text[: text.rfind(b"\n", 0, first) + 1]
    pages: list[list[bytes]] = [[] for _ in range(parts)]
    pos, n = first, 0
    while (start := text.find(b"<page>", pos)) != -1:
        end = text.index(b"</page>", start) + len(b"</page>")
        pages[n % parts].append(b"  " + text[start:end] + b"\n")
        pos, n = end, n + 1
    out = []
    for i, chunk in enumerate(pages):
        target = folder / f"part{i}.xml.bz2"
        target.write_bytes(bz2.compress(head + b"".join(chunk) + b"</mediawiki>\n", 9))
        out.append(target)
    return out


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run() -> None:
    if not DUMP.is_file():
        print(f"skipped: {DUMP} not found")
        return
    load = os.getloadavg()
    xml_mb = len(bz2.decompress(DUMP.read_bytes())) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        parts = split_dump(DUMP, root, PARTS)
        settings = load_settings(env={}, data_dir=str(root / "var"))
        blobs = FilesystemBlobStore(settings.blob_root)
        t_a = best(lambda: bare_mwxml(DUMP))
        t_b = best(lambda: build_snapshots([DUMP], blobs, settings, workers=1))
        t_c = best(lambda: build_snapshots(parts, blobs, settings, workers=2))
        t_c1 = best(lambda: build_snapshots(parts, blobs, settings, workers=1))
    rate_a = xml_mb / t_a
    print(f"input: {DUMP.name} ({xml_mb:.1f} MB XML); best of {REPEATS}; "
          f"{os.cpu_count()} CPUs, load average before {load[0]:.2f} (other work skews ratios)")
    rows = [
        ("(a) bare mwxml iteration", t_a, None),
        ("(b) ingest + build, 1 worker", t_b, 0.9),
        (f"(c) ingest + build, 2 workers, {PARTS} files", t_c, 1.7),
        (f"    (same {PARTS} files, 1 worker)", t_c1, None),
    ]
    for label, seconds, target in rows:
        rate = xml_mb / seconds
        ratio = rate / rate_a
        verdict = "" if target is None else (
            f"  target >= {target:.1f}x: {'met' if ratio >= target else 'NOT met'}")
        print(f"{label:<44} {rate:7.2f} MB/s  {ratio:5.2f}x{verdict}")


if __name__ == "__main__":
    run()
