"""
C{wsgi.file_wrapper} (PEP 3333, "Optional Platform-Specific File Handling"):
an application returns C{environ['wsgi.file_wrapper'](file)} and the server
streams the file a block at a time, as the client takes it, instead of
holding it in memory.
"""

from __future__ import annotations

from typing import IO, Any

#: Bytes read at a time: large enough that a big file is few writes, small
#: enough that a slow client never makes a worker hold much of it.
BLOCK_SIZE = 65536


class FileWrapper:
    """
    An iterable over the blocks of a file-like object, which closes it when
    the server closes the iterable.
    """

    def __init__(self, filelike: IO[bytes] | Any, blksize: int = BLOCK_SIZE) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
