"""
How much memory a process uses, read from Linux's /proc.

A worker reads its own resident set size once a second, to report it and to
retire itself past C{--max-rss}; the unique set size (the pages no other
process shares) tells how well the workers share the template's memory.
"""

from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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


def uniqueBytes(pid: int | str = "self") -> int:
    """
    The unique set size of process C{pid} (its private clean and dirty
    pages), in bytes, from /proc/PID/smaps_rollup; 0 if it is unknown.
    """
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("Private_Clean", "Private_Dirty"):
                    total += int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return 0
    return total
