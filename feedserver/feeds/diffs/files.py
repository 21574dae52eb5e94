"""Client-side files for ``diff apply``: a downloaded snapshot and diff, as ``.zst`` or NDJSON.

Accepted forms of the base: a whole-snapshot download (WME's ``.tar.gz``, the default
download, or ``.zst``: zstd frames back to back), an NDJSON file, or a folder of chunk files
(``*_chunk_{k}.ndjson.zst`` / ``.ndjson``, taken in chunk order). The diff: a whole-diff
download (``.zst``) or its NDJSON. The output is written to ``OUT.part`` and renamed to
``OUT`` only once verified, so a failed check never leaves a plausible-looking file behind.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from feedserver.errors import IntegrityError, InvalidParameter
from feedserver.feeds.diffs.apply import ApplyReport, DiffMismatch, VerifiedApply
from feedserver.feeds.diffs.manifest import (
    MANIFEST_DECODER,
    RAW_ENTRY_DECODER,
    DiffManifest,
    RawEntry,
)
from feedserver.feeds.snapshots.chunks import iter_file_lines
from feedserver.formats.checksums import checksum_file

_CHUNK_NO = re.compile(r"_chunk_(\d+)\.")


def _is_zstd(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x28\xb5\x2f\xfd"


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _tar_lines(path: Path) -> Iterator[bytes]:
    """The NDJSON lines of every entry of a tar.gz, in order (read as a stream)."""
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                entry = tar.extractfile(member) if member.isfile() else None
                if entry is not None:
                    yield from _lines(entry)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise IntegrityError(f"{path.name} is not a readable tar.gz: {exc}") from exc


def _lines(fh: IO[bytes]) -> Iterator[bytes]:
    for raw in fh:
        line = raw.rstrip(b"\r\n")
        if line:
            yield line


def _file_lines(path: Path) -> Iterator[bytes]:
    if _is_zstd(path):
        yield from iter_file_lines(path)
        return
    if _is_gzip(path):
        yield from _tar_lines(path)
        return
    with path.open("rb") as fh:
        yield from _lines(fh)


def _chunk_order(path: Path) -> tuple[int, str]:
    match = _CHUNK_NO.search(path.name)
    return (int(match.group(1)) if match else -1, path.name)


def read_lines(path: Path) -> Iterator[bytes]:
    """NDJSON lines (without newline) of a file or a folder of chunk files."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir()
                        if p.is_file() and p.name.endswith((".zst", ".ndjson"))),
                       key=_chunk_order)
        if not files:
            raise InvalidParameter(f"{path} holds no .ndjson or .zst chunk files")
        for file in files:
            yield from _file_lines(file)
    elif path.is_file():
        yield from _file_lines(path)
    else:
        raise InvalidParameter(f"{path} is neither a file nor a folder")


class EntryFile:
    """The entries of a diff file; re-iterable (re-reads the file) so memory stays flat."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InvalidParameter(f"diff {path} is not a file")
        self.path = path

    def __iter__(self) -> Iterator[RawEntry]:
        for number, line in enumerate(read_lines(self.path), 1):
            try:
                yield RAW_ENTRY_DECODER.decode(line)
            except msgspec.DecodeError as exc:
                raise DiffMismatch(f"diff line {number} is not a valid entry: {exc}") from exc


def load_manifest(data: bytes, source: str) -> DiffManifest:
    try:
        return MANIFEST_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"{source} is not a diff manifest: {exc}") from exc


def download_problems(diff: Path, manifest: DiffManifest) -> list[str]:
    """A whole-diff ``.zst`` download must match the manifest's size and SHA-256 (NDJSON
    copies are checked through the content hashes only)."""
    if not _is_zstd(diff):
        return []
    sums = checksum_file(diff)
    sha, size = sums.sha256, sums.size
    if size == manifest.size.value and sha == manifest.sha256:
        return []
    return [f"diff file {diff.name} ({size} B, sha256 {sha}) is not the published download "
            f"({int(manifest.size.value)} B, sha256 {manifest.sha256})"]


def apply_files(base: Path, diff: Path, manifest: DiffManifest, output: Path | None
                ) -> tuple[ApplyReport | None, list[str]]:
    """Apply ``diff`` to ``base``, write version N to ``output`` (None: only verify); return
    the report and the list of problems (empty: verified)."""
    entries = EntryFile(diff)
    if not base.exists():
        raise InvalidParameter(f"base {base} is neither a file nor a folder")
    problems = download_problems(diff, manifest)
    run = VerifiedApply(read_lines(base), entries)
    tmp = None if output is None else output.with_name(output.name + ".part")
    try:
        try:
            if tmp is None:
                report = run.run()
            else:
                with tmp.open("wb") as out:
                    for line in run:
                        out.write(line)
                        out.write(b"\n")
                assert run.report is not None
                report = run.report
        except IntegrityError as exc:  # corrupt zstd, bad JSON, diff not fitting the base
            return None, [*problems, exc.detail]
        problems += report.problems(manifest)
        if tmp is not None and output is not None and not problems:
            tmp.replace(output)
        return report, problems
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
