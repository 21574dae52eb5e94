"""keep_freed_memory: glibc's thresholds fixed once, an operator's malloc tuning left alone."""

from __future__ import annotations

import platform

import pytest

from feedserver.api.malloc_tuning import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_sets_the_thresholds_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    # mallopt answers 1 only for values glibc accepts: the 32 MiB mmap threshold is its
    # maximum on 64-bit, so a larger constant would silently do nothing.
    assert keep_freed_memory() is True


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                  "GLIBC_TUNABLES"])
def test_an_operators_tuning_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # The environment is read by glibc at start-up; overriding it from inside would undo a
    # deliberate deployment choice.
    monkeypatch.setenv(name, "glibc.malloc.trim_threshold=0" if name == "GLIBC_TUNABLES"
                       else "0")
    assert keep_freed_memory() is False
