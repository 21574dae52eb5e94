"""CPU seconds of this process and every process it started, however deep (Linux ``/proc``).

``resource.getrusage(RUSAGE_CHILDREN)`` only sees the children this process itself has waited
for. The snapshot build's workers are not such children: a fork server (a child of this
process, alive until this process exits) forks them and waits for them, so their CPU lands in
the fork server's own children's time. ``tree_cpu`` adds up, for this process and each live
descendant, user + system time and the time of the children it has waited for
(``/proc/PID/stat`` fields utime, stime, cutime, cstime), plus this process's own reaped
children. A process that has exited is counted by whoever waited for it, so the sum is exact
at quiet points: take it before and after a build, when no worker is being reaped (the pool
joins its workers before the build returns). Resolution: one clock tick (10 ms) per process.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces):
    index 1 is the parent pid, 11-14 utime, stime, cutime, cstime in clock ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far (not its children)."""
    fields = _stat_fields(pid)
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (not its children)."""
    user, system = process_times(pid)
    return user + system


def stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its waited-for children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:  # gone since the listing
            continue
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        found[int(entry.name)] = (int(fields[1]), ticks / _TICK)
    return found


def descendants(stats: dict[int, tuple[int, float]], root: int) -> list[int]:
    """The pids below ``root`` in the process tree ``stats``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu() -> float:
    """User + system CPU seconds used so far by this process, its waited-for children and
    every live descendant with the children they waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    found = stats()
    return total + sum(found[pid][1] for pid in descendants(found, os.getpid()))
