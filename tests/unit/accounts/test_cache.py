"""The principal cache: a hit takes no lock; expiry and ``put`` still behave under threads."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from feedserver.accounts.cache import TTLCache


@given(st.lists(st.tuples(st.sampled_from(["get", "put", "drop"]), st.integers(0, 3),
                          st.floats(0, 10)), max_size=60))
def test_matches_a_plain_model(ops: list[tuple[str, int, float]]) -> None:
    # The cache answers what a dict of (expiry, value) answers, whatever the order of calls.
    cache: TTLCache[int] = TTLCache(ttl=2.0)
    model: dict[int, tuple[float, int]] = {}
    now = 0.0
    for i, (op, key, step) in enumerate(ops):
        now += step
        if op == "put":
            cache.put(key, i, now)
            model[key] = (now + 2.0, i)
        elif op == "drop":
            cache.drop(key)
            model.pop(key, None)
        else:
            item = model.get(key)
            expected = item[1] if item is not None and item[0] > now else None
            if item is not None and expected is None:
                del model[key]
            assert cache.get(key, now) == expected


def test_expiry_never_removes_a_fresh_put() -> None:
    # An expired entry is removed under the lock only if it is still the one read: a put
    # racing with the removal survives (a thread per side, bounded loops).
    cache: TTLCache[int] = TTLCache(ttl=1.0)
    errors: list[BaseException] = []

    def putter() -> None:
        try:
            for i in range(5_000):
                cache.put("k", i, now=float(i))
        except BaseException as exc:  # pragma: no cover - the failure reported below
            errors.append(exc)

    thread = threading.Thread(target=putter)
    thread.start()
    for i in range(5_000):
        cache.get("k", now=float(i) + 0.5)
    thread.join(timeout=60)
    assert not errors
    assert cache.get("k", now=4_999.5) == 4_999
