from __future__ import annotations

import pytest

from feedserver.errors import InvalidParameter
from feedserver.feeds.events.membership import (
    Membership,
    member_from_hostname,
    membership,
    related_checkpoint,
)


def test_ownership_partitions_every_partition_once() -> None:
    members = [membership(i, 3) for i in range(3)]
    for p in range(10):
        assert sum(m.owns(p) for m in members) == 1
    assert [p for p in range(8) if members[1].owns(p)] == [1, 4, 7]
    assert all(Membership().owns(p) for p in range(5))


def test_checkpoint_groups() -> None:
    assert Membership().checkpoint_group("g") == "g"
    assert membership(1, 2).checkpoint_group("g") == "g#1/2"
    assert related_checkpoint("g", "g") and related_checkpoint("g", "g#1/2")
    assert not related_checkpoint("g", "gg") and not related_checkpoint("g", "other")


@pytest.mark.parametrize(("member", "members"), [(0, 0), (-1, 1), (2, 2), (5, 3)])
def test_invalid(member: int, members: int) -> None:
    with pytest.raises(InvalidParameter):
        membership(member, members)


def test_member_from_hostname() -> None:
    assert member_from_hostname("feedserver-events-consumer-1") == 1
    assert member_from_hostname("feedserver-events-consumer-12.svc.cluster.local") == 12
    for bad in ("feedserver", "consumer-", "consumer-x1", ""):
        with pytest.raises(InvalidParameter):
            member_from_hostname(bad)
