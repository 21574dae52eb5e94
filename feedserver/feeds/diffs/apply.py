"""Apply a diff to a base version and prove the result is version N (pure: no I/O).

``apply_diff(base_lines, entries)`` streams the base's NDJSON lines, drops the pages the diff
deletes or replaces, then appends the diff's added and updated articles as their exact bytes.
Memory holds only the diff's keys, never the articles: the entries are iterated twice (keys
first, articles last), so pass something re-iterable (a list, or a reader that re-opens its
file) to keep memory flat.

``VerifiedApply`` wraps it and hashes both sides on the way through: the base's content root
hash must equal the diff manifest's ``base_content_root_hash`` (right base) and the output's
must equal ``content_root_hash`` (right result). Order does not matter to those hashes, so the
output may list records in another order than the server's chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from feedserver.errors import IntegrityError
from feedserver.feeds.diffs.manifest import (
    DiffCounts,
    DiffManifest,
    RawAdd,
    RawDelete,
    RawEntry,
    RawUpdate,
)
from feedserver.formats.hashing import RootHasher, line_digest
from feedserver.models import ArticleKey


class DiffMismatch(IntegrityError):
    """The diff does not fit the base, or base + diff does not hash to the promised version."""

    slug = "diff-mismatch"
    title = "Diff does not match"


class _IdProbe(msgspec.Struct):
    identifier: int


class _ProjectProbe(msgspec.Struct):
    identifier: str


class ArticleProbe(msgspec.Struct):
    """Just enough of an Article to key it (decoding skips every other field)."""

    name: str
    identifier: int
    namespace: _IdProbe
    is_part_of: _ProjectProbe
    version: _IdProbe | None = None

    @property
    def key(self) -> ArticleKey:
        return ArticleKey(self.is_part_of.identifier, self.namespace.identifier, self.identifier)

    @property
    def revision(self) -> int | None:
        return None if self.version is None else self.version.identifier


PROBE_DECODER = msgspec.json.Decoder(ArticleProbe)


def probe(line: bytes | memoryview) -> ArticleProbe:
    try:
        return PROBE_DECODER.decode(line)
    except msgspec.DecodeError as exc:
        raise IntegrityError(f"not an article record: {exc}") from exc


def _reiterable(entries: Iterable[RawEntry]) -> Iterable[RawEntry]:
    return list(entries) if iter(entries) is entries else entries


def apply_diff(base_lines: Iterable[bytes], entries: Iterable[RawEntry]) -> Iterator[bytes]:
    """Lines (without newline) of base + diff. Raises DiffMismatch when the diff does not fit:
    a delete/update of a page the base lacks, an add of one it has, a key twice in the diff."""
    entries = _reiterable(entries)
    ops: dict[ArticleKey, str] = {}
    for entry in entries:
        if entry.key in ops:
            raise DiffMismatch(f"diff lists page {_fmt(entry.key)} twice")
        ops[entry.key] = _op(entry)
    replaced: set[ArticleKey] = set()
    for line in base_lines:
        key = probe(line).key
        op = ops.get(key)
        if op is None:
            yield line
            continue
        if op == "add":
            raise DiffMismatch(f"diff adds page {_fmt(key)} which the base already has")
        if key in replaced:
            raise DiffMismatch(f"base lists page {_fmt(key)} twice")
        replaced.add(key)
    missing = [k for k, op in ops.items() if op != "add" and k not in replaced]
    if missing:
        raise DiffMismatch(f"diff changes {len(missing)} page(s) the base does not have, "
                           f"e.g. {_fmt(missing[0])}: wrong base version?")
    for entry in entries:
        if isinstance(entry, RawDelete):
            continue
        line = bytes(entry.article)
        if probe(line).key != entry.key:
            raise DiffMismatch(f"diff entry for {_fmt(entry.key)} carries another page")
        yield line


def _op(entry: RawEntry) -> str:
    if isinstance(entry, RawAdd):
        return "add"
    if isinstance(entry, RawUpdate):
        return "update"
    return "delete"


def _fmt(key: ArticleKey) -> str:
    return f"{key.project}/{key.namespace}/{key.identifier}"


class ApplyReport(msgspec.Struct, kw_only=True):
    base_article_count: int
    article_count: int
    base_content_root_hash: str
    content_root_hash: str
    counts: DiffCounts

    def problems(self, manifest: DiffManifest) -> list[str]:
        """What differs from the manifest's promise; empty means verified."""
        out = []
        if self.base_content_root_hash != manifest.base_content_root_hash:
            out.append(f"base content root hash {self.base_content_root_hash} is not the diff's "
                       f"base {manifest.base_content_root_hash} (wrong or corrupt base)")
        if self.counts != manifest.counts:
            out.append(f"diff holds add/update/delete {self.counts.add}/{self.counts.update}/"
                       f"{self.counts.delete}, manifest says {manifest.counts.add}/"
                       f"{manifest.counts.update}/{manifest.counts.delete}")
        if self.article_count != manifest.article_count:
            out.append(f"result has {self.article_count} articles, "
                       f"version {manifest.version} has {manifest.article_count}")
        if self.content_root_hash != manifest.content_root_hash:
            out.append(f"result content root hash {self.content_root_hash} is not version "
                       f"{manifest.version}'s {manifest.content_root_hash}")
        return out


class VerifiedApply:
    """Iterate to get the output lines; then ``report`` holds both sides' hashes and counts."""

    def __init__(self, base_lines: Iterable[bytes], entries: Iterable[RawEntry]) -> None:
        self._base = base_lines
        self._entries = _reiterable(entries)
        self.report: ApplyReport | None = None

    def _hash_base(self, hasher: RootHasher) -> Iterator[bytes]:
        for line in self._base:
            hasher.add_digest(line_digest(line))
            yield line

    def __iter__(self) -> Iterator[bytes]:
        base_root, root = RootHasher(), RootHasher()
        counts = DiffCounts()
        for entry in self._entries:
            if isinstance(entry, RawAdd):
                counts.add += 1
            elif isinstance(entry, RawUpdate):
                counts.update += 1
            else:
                counts.delete += 1
        for line in apply_diff(self._hash_base(base_root), self._entries):
            root.add_digest(line_digest(line))
            yield line
        self.report = ApplyReport(
            base_article_count=base_root.count, article_count=root.count,
            base_content_root_hash=base_root.hexdigest(), content_root_hash=root.hexdigest(),
            counts=counts,
        )

    def run(self) -> ApplyReport:
        """Apply without keeping the output (verification only)."""
        for _ in self:
            pass
        assert self.report is not None
        return self.report
