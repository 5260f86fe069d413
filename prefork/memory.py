"""
How much memory a process uses, read from Linux's /proc.

A worker measures itself once a second, at its heartbeat's pace, to report
it and to retire itself past C{--max-rss} or C{--max-uss}.  Three numbers
tell different stories about a process forked from a template:

  - the resident set size (RSS) counts every page it maps, those it still
    shares copy-on-write with the template and its siblings too;
  - the unique set size (USS, its private clean and dirty pages) is what
    the process alone costs: the memory freed when it exits, and what grows
    when it leaks;
  - the proportional set size (PSS) splits each shared page between the
    processes that share it: the PSS of all the processes adds up to what
    they use together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: The lines of smaps_rollup read, each in kB.
_ROLLUP_FIELDS = frozenset({"Rss", "Pss", "Private_Clean", "Private_Dirty"})


@dataclass(frozen=True)
class MemoryUsage:
    """
    A process's memory, in bytes; 0 where it is unknown.
    """

    rss: int = 0
    pss: int = 0
    uss: int = 0


def residentBytes(pid: int | str = "self") -> int:
    """
    The resident set size of process C{pid}, in bytes; 0 if it is unknown.

    /proc/PID/statm is one short line, far cheaper to read than status.
    """
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _rollup(pid: int | str) -> dict[str, int] | None:
    """
    The fields of /proc/PID/smaps_rollup that L{memoryUsage} needs, in
    bytes; L{None} if it cannot be read (no such process, or a kernel
    older than 4.14).
    """
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in _ROLLUP_FIELDS:
                    fields[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return fields


def memoryUsage(pid: int | str = "self") -> MemoryUsage:
    """
    The RSS, PSS and USS of process C{pid}, from one read of
    /proc/PID/smaps_rollup.  The kernel walks the process's page tables to
    write it, so it is read once a second, never per request; where it
    cannot be read, the RSS comes from /proc/PID/statm alone.
    """
    fields = _rollup(pid)
    if fields is None:
        return MemoryUsage(rss=residentBytes(pid))
    unique = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return MemoryUsage(rss=fields.get("Rss", 0), pss=fields.get("Pss", 0), uss=unique)


def uniqueBytes(pid: int | str = "self") -> int:
    """
    The unique set size of process C{pid} (its private clean and dirty
    pages), in bytes, from /proc/PID/smaps_rollup; 0 if it is unknown.
    """
    fields = _rollup(pid)
    return 0 if fields is None else fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
