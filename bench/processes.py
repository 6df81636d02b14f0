"""What a target's processes cost, read from /proc (Linux): the processes behind a listening
port, their CPU time and their resident memory.

A target's processes are those of the session of the process that listens on its port: every
target the bench starts gets a session of its own (`start_new_session`), so that takes in a
gateway and any worker it forks, and nothing else. For a Worker, whose port is the workerd
that runs it, that process alone (see `Endpoint.listener_only`).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # the TCP state "listening" in /proc/net/tcp
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces):
    index 0 is field 3 (state), so field n is at n - 3."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listener(port: int) -> int | None:
    """The process listening on a local TCP port, if this user may see it."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    for pid in _pids():
        try:
            if any(os.readlink(fd) in sockets for fd in (PROC / str(pid) / "fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def session(pid: int) -> list[int]:
    """Every live process in `pid`'s session, or just `pid` when that session is the bench's own."""
    fields = _stat_fields(pid)
    if fields is None:
        return []
    sid = int(fields[3])  # field 6
    if sid == os.getsid(0):
        return [pid]
    return [other for other in _pids() if (_stat_fields(other) or [None] * 4)[3] == str(sid)]


def serving(port: int, listener_only: bool = False) -> list[int]:
    """The processes of the target listening on `port` (none found: an empty list): the
    listener's whole session, or with `listener_only` the listening process alone."""
    pid = listener(port)
    if pid is None:
        return []
    return [pid] if listener_only else session(pid)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far (utime + stime)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15
    return total / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """The sum of the processes' resident set sizes (pages shared between them count twice)."""
    total = 0
    for pid in pids:
        try:
            total += int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total
