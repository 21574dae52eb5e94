"""Answering from the pointer last read (``SnapshotStore.resolved``, ``pointers``): on a store
of local files one ``stat`` replaces the pointer's read, and it must never answer anything a
fresh read of the pointer would not."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import Settings, load_settings
from feedserver.errors import SnapshotNotFound
from feedserver.feeds.snapshots.manifest import index_key
from feedserver.feeds.snapshots.pointers import Pointers, stamp
from feedserver.feeds.snapshots.publish import read_index
from feedserver.feeds.snapshots.store import Resolved, SnapshotStore
from feedserver.storage.blobs import FilesystemBlobStore
from tests.fixtures.manifest_cache import SNAP, publish
from tests.unit.feeds.snapshots.test_manifest_cache import CountingStore


def _settings(root: Path) -> Settings:
    return load_settings(env={}, data_dir=str(root), chunk_size=4000, retention_versions=2,
                         wme_archives=False)


def _fresh(blobs: FilesystemBlobStore, version: int | None) -> Resolved | None:
    """What a reader with no memory at all answers (None: no such snapshot or version)."""
    try:
        return SnapshotStore(blobs).resolve(SNAP, version)
    except SnapshotNotFound:
        return None


def test_unchanged_pointer_answers_without_reading(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    blobs = CountingStore(s.blob_root)
    store = SnapshotStore(blobs)
    publish(blobs, s, 3)
    assert store.resolved(SNAP) is None  # never read: memory cannot answer
    first = store.resolve(SNAP)
    before = len(blobs.reads)
    # Why: this is what spares a metadata request its worker-thread hop.
    assert store.resolved(SNAP) == first and store.resolved(SNAP, 1) == first
    assert blobs.reads[before:] == []
    # An identifier never read (a hostile one too) is simply not in memory: the read decides.
    assert store.resolved("../" + SNAP) is None and store.resolved("enwiki_namespace_0\x00") is None
    # A version the pointer does not list is an error from memory too, as from a read.
    with pytest.raises(SnapshotNotFound):
        store.resolved(SNAP, 7)


def test_a_publish_is_seen_at_once(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    blobs = FilesystemBlobStore(s.blob_root)
    store = SnapshotStore(blobs)
    publish(blobs, s, 3)
    store.resolve(SNAP)
    publish(blobs, s, 4)
    # The pointer file was replaced (renamed over): memory must not answer for it.
    assert store.resolved(SNAP) is None
    assert store.resolve(SNAP).manifest.version == 2
    assert store.resolved(SNAP) == store.resolve(SNAP)


def test_stamp_taken_before_the_read(tmp_path: Path) -> None:
    """A publish between the stamp and the read leaves the OLD file's stamp with the new
    content: the next look reads again (the other order would stay stale for good)."""
    s = _settings(tmp_path)
    blobs = FilesystemBlobStore(s.blob_root)
    publish(blobs, s, 3)
    path = blobs.local_path(index_key(SNAP))
    old = stamp(path)
    publish(blobs, s, 4)
    pointers = Pointers()
    index = read_index(blobs, SNAP)  # the new content, read after the stamp
    assert index is not None and index.current == 2
    pointers.remember(SNAP, path, old, index)
    assert pointers.unchanged(SNAP) is None
    pointers.remember(SNAP, path, stamp(path), index)
    assert pointers.unchanged(SNAP) is index
    # A pointer whose file was missing when read is never answered from memory.
    pointers.remember(SNAP, path, None, index)
    assert pointers.unchanged(SNAP) is None
    os.unlink(path)
    assert stamp(path) is None


ACTIONS = st.lists(st.sampled_from(["publish", "delete", "read", "touch"]), min_size=1,
                   max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, asked=st.sampled_from([None, 1, 2, 3]))
def test_memory_never_answers_what_a_fresh_read_would_not(tmp_path_factory: pytest.TempPathFactory,
                                                          actions: list[str],
                                                          asked: int | None) -> None:
    """Any mix of publishes (2 versions kept), deletions of the whole snapshot (numbers start
    over, new lineage), reads, and rewrites of the pointer with the same bytes: whenever
    memory answers, it answers exactly what a reader with no memory reads."""
    root = tmp_path_factory.mktemp("pointers")
    s = _settings(root)
    blobs = FilesystemBlobStore(s.blob_root)
    store = SnapshotStore(blobs)
    for n, action in enumerate(actions):
        if action == "publish":
            publish(blobs, s, 2 + n)
        elif action == "delete":
            blobs.delete(list(blobs.list(f"snapshots/{SNAP}/")))
        elif action == "touch" and blobs.exists(index_key(SNAP)):
            # rewritten through the store (a new file renamed over it), same content
            blobs.put_bytes(index_key(SNAP), blobs.get_bytes(index_key(SNAP)))
        else:
            with contextlib.suppress(SnapshotNotFound):
                store.resolve(SNAP, asked)
        try:
            known = store.resolved(SNAP, asked)
        except SnapshotNotFound:
            assert _fresh(blobs, asked) is None
            continue
        if known is not None:
            assert known == _fresh(blobs, asked)
