"""Answering from the pointer last read (``SnapshotStore.resolved``, ``pointers``): on a store
of local files one ``stat`` replaces the pointer's read, and it must never answer anything a
fresh read of the pointer would not."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import Settings, load_settings
from feedserver.errors import IntegrityError, SnapshotNotFound
from feedserver.feeds.snapshots.manifest import SnapshotIndex, index_key
from feedserver.feeds.snapshots.pointers import Pointers, pin, stamp
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


ONE = SnapshotIndex(identifier=SNAP, current=1, versions=[1])


def _open_files(under: Path) -> int:
    """Files this process holds open below ``under``. Only the test's own directory is
    counted: the process-wide count also moves when a collection closes files other tests
    left behind (CI once saw it drop by 17 across ``gc.collect()``)."""
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            held += os.readlink(f"/proc/self/fd/{fd}").startswith(f"{under}/")
    return held


def test_pinned_before_the_read(tmp_path: Path) -> None:
    """A publish between the pin and the read leaves the OLD file's stamp with the new
    content: the next look reads again (the other order would stay stale for good)."""
    s = _settings(tmp_path)
    blobs = FilesystemBlobStore(s.blob_root)
    publish(blobs, s, 3)
    path = blobs.local_path(index_key(SNAP))
    assert path is not None
    old = pin(path)
    publish(blobs, s, 4)
    pointers = Pointers()
    index = read_index(blobs, SNAP)  # the new content, read after the pin
    assert index is not None and index.current == 2
    pointers.remember(SNAP, path, old, index)
    assert pointers.unchanged(SNAP) is None
    pointers.remember(SNAP, path, pin(path), index)
    assert pointers.unchanged(SNAP) is index
    # A pointer whose file was missing when read is never answered from memory.
    pointers.remember(SNAP, path, None, index)
    assert pointers.unchanged(SNAP) is None and pointers.held() == 0
    os.unlink(path)
    assert stamp(path) is None and pin(path) is None


def test_a_new_pointer_never_takes_the_pinned_files_identity(tmp_path: Path) -> None:
    """The stamp's one blind spot was a new pointer of the same size and modification time
    on the freed inode of the old one (filesystems do reuse a freed inode at once). The old
    file is held open, so its inode is never freed while remembered: even a rewrite forged to
    the same size and mtime is seen as another file."""
    path = tmp_path / "index.json"
    pointers = Pointers()
    for n in range(20):  # bounded: enough for ext4 and tmpfs to offer a freed inode again
        path.write_bytes(b'{"n": %02d}' % n)
        held = pin(path)
        assert held is not None
        index = ONE
        pointers.remember(SNAP, path, held, index)
        assert pointers.unchanged(SNAP) is index
        # The old name goes first, as a deletion then a publish would: without the pin,
        # ext4 hands the freed inode to the very next file (every time, measured).
        os.unlink(path)
        new = tmp_path / "index.json.new"
        new.write_bytes(b'{"n": %02d}' % (n + 1))  # same size
        os.utime(new, ns=(held.stamp[3], held.stamp[3]))  # same mtime
        os.rename(new, path)
        assert pointers.unchanged(SNAP) is None


def test_files_held_are_bounded_and_closed(tmp_path: Path) -> None:
    """Each entry holds its file open: at most ``held`` of them, the oldest closed first; a
    replaced entry's file and, when the store goes, all of them are closed."""
    files = _open_files(tmp_path)
    pointers = Pointers(held=3)
    paths = []
    for n in range(5):
        paths.append(tmp_path / f"{n}.json")
        paths[-1].write_bytes(b"{}")
        pointers.remember(f"s{n}", paths[-1], pin(paths[-1]), ONE)
    assert pointers.held() == 3 and _open_files(tmp_path) == files + 3
    assert pointers.unchanged("s0") is None and pointers.unchanged("s4") is not None
    pointers.remember("s4", paths[4], pin(paths[4]), ONE)
    assert _open_files(tmp_path) == files + 3  # the replaced entry's file was closed
    del pointers
    gc.collect()
    assert _open_files(tmp_path) == files


def test_a_failed_read_holds_nothing(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    blobs = FilesystemBlobStore(s.blob_root)
    publish(blobs, s, 3)
    store = SnapshotStore(blobs)
    path = blobs.local_path(index_key(SNAP))
    assert path is not None
    path.write_bytes(b"{not json")
    files = _open_files(tmp_path)
    with pytest.raises(IntegrityError):
        store.resolve(SNAP)
    assert _open_files(tmp_path) == files and store.pointers.held() == 0


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
