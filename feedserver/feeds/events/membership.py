"""Static partition membership of the events consumer (pure; no I/O).

``members`` consumer processes share one consumer group; member ``i`` owns input partition
``p`` of every input topic iff ``p % members == i``. Nothing is negotiated at run time (there is
no rebalance protocol), so two members can never own the same partition as long as every
process runs with the same ``members``. Changing ``members`` is therefore a stop-the-world
change: stop all of them, start all of them with the new value.

Each member keeps its own output checkpoints (``checkpoint_group``): a member's checkpoint is
only a safe scan start for the source partitions that member produces for.
"""

from __future__ import annotations

import re

import msgspec

from feedserver.errors import InvalidParameter

_ORDINAL = re.compile(r"-(\d+)$")


class Membership(msgspec.Struct, frozen=True):
    member: int = 0
    members: int = 1

    def owns(self, partition: int) -> bool:
        return partition % self.members == self.member

    def checkpoint_group(self, group: str) -> str:
        """The ``consumer_checkpoints.grp`` of this member: the plain group for a single
        member (as before membership existed), else one key per member and layout."""
        if self.members == 1:
            return group
        return f"{group}#{self.member}/{self.members}"


def membership(member: int, members: int) -> Membership:
    """A validated membership; ``InvalidParameter`` for impossible values."""
    if members < 1:
        raise InvalidParameter(f"members must be at least 1, got {members}", members=members)
    if not 0 <= member < members:
        raise InvalidParameter(f"member must be in 0..{members - 1}, got {member}",
                               member=member, members=members)
    return Membership(member, members)


def related_checkpoint(group: str, grp: str) -> bool:
    """Whether a ``consumer_checkpoints.grp`` belongs to ``group`` under any layout."""
    return grp == group or grp.startswith(group + "#")


def member_from_hostname(hostname: str) -> int:
    """The trailing ``-<ordinal>`` of a host name, as a Kubernetes StatefulSet pod has
    (``feedserver-events-consumer-1`` -> 1)."""
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    if match is None:
        raise InvalidParameter(
            f"--member auto: host name {hostname!r} does not end in -<ordinal>",
            hostname=hostname)
    return int(match.group(1))
