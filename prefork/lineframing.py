"""
Cutting a byte stream from a pipe into lines, in linear time and with a cap
on each line's length.

The master reads every worker's and template's standard error and the
shared status pipe, and a template reads the master's commands.  Whatever
the other end writes, the reader holds at most one line's worth of bytes:
a line longer than L{MAX_LINE} comes out in pieces of at most that many
bytes, each marked as part of a longer line, rather than being gathered
until its newline arrives (which may be never).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The longest line (without its line ending) a reader hands on whole.
MAX_LINE = 64 * 1024

_LF = 0x0A
_CR = 0x0D


@dataclass(frozen=True)
class Line:
    """
    One line, or one piece of a line longer than the cap.

    @ivar data: The bytes, without the line ending (LF or CRLF).
    @ivar continues: More of the same line follows in the next piece.
    @ivar continuation: This piece carries on the line of the one before.
    """

    data: bytes
    continues: bool = False
    continuation: bool = False

    @property
    def whole(self) -> bool:
        """
        Whether this is a complete line rather than a piece of a long one.
        """
        return not (self.continues or self.continuation)

    def text(self) -> str:
        """
        The line decoded for a log, a piece of a longer line marked so that
        a reader of the log sees where it was cut.
        """
        text = self.data.decode("utf-8", "replace")
        if self.continuation:
            text = "[continued] " + text
        if self.continues:
            text += f" [cut at {len(self.data)} bytes, continues]"
        return text


class LineFramer:
    """
    Splits the bytes given to L{feed} into L{Line}s.

    Every byte is looked at a bounded number of times, however the input is
    cut into reads, and at most C{maxLength + 1} bytes wait for the rest of
    their line.
    """

    def __init__(self, maxLength: int = MAX_LINE) -> None:
        if maxLength < 1:
            raise ValueError(f"maxLength must be at least 1, not {maxLength}")
        self.maxLength = maxLength
        self._buffer = bytearray()
        # The bytes of the buffer before this offset hold no LF.
        self._scanned = 0
        # The last piece given out continues.
        self._inLine = False

    @property
    def pending(self) -> int:
        """
        How many bytes wait for the rest of their line.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Line]:
        """
        The lines (and pieces of long lines) that C{data} completes.
        """
        buffer = self._buffer
        buffer += data
        lines: list[Line] = []
        start, scanned, cap = 0, self._scanned, self.maxLength
        while True:
            # A line ending is as far as the cap, then CR LF: past that, the
            # line is too long whatever follows, so look no further.
            limit = start + cap + 2
            end = buffer.find(_LF, scanned, limit)
            if end >= 0:
                stop = end - 1 if end > start and buffer[end - 1] == _CR else end
                if stop - start <= cap:
                    lines.append(self._piece(bytes(buffer[start:stop]), continues=False))
                    start = scanned = end + 1
                    continue
            elif len(buffer) < limit:
                scanned = len(buffer)
                break
            lines.append(self._piece(bytes(buffer[start:start + cap]), continues=True))
            start += cap
            scanned = start if end >= 0 else limit
        del buffer[:start]
        self._scanned = scanned - start
        return lines

    def flush(self) -> list[Line]:
        """
        At the end of the stream: what is left, as a last line without its
        line ending.
        """
        lines: list[Line] = []
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        while len(rest) > self.maxLength:
            lines.append(self._piece(rest[:self.maxLength], continues=True))
            rest = rest[self.maxLength:]
        if rest:
            lines.append(self._piece(rest, continues=False))
        return lines

    def _piece(self, data: bytes, continues: bool) -> Line:
        line = Line(data, continues=continues, continuation=self._inLine)
        self._inLine = continues
        return line
