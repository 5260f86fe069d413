"""
Unit tests of L{prefork.lineframing}: the same lines however the reads cut
the stream, LF and CRLF endings, lines at and around the cap, and huge
input without a newline framed in linear time and bounded memory.
"""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefork.lineframing import MAX_LINE, Line, LineFramer


def expected(data: bytes, cap: int) -> list[Line]:
    """
    What the framer must make of C{data}, worked out the slow, obvious way:
    the whole stream split at LF, one CR before the LF dropped, each line
    longer than C{cap} cut into pieces of C{cap}; the unterminated rest as
    a last line.
    """
    *complete, rest = data.split(b"\n")
    contents = [line[:-1] if line.endswith(b"\r") else line for line in complete]
    if rest:
        contents.append(rest)
    lines = []
    for content in contents:
        chunks = [content[i:i + cap] for i in range(0, len(content), cap)] or [b""]
        for i, chunk in enumerate(chunks):
            lines.append(Line(chunk, continues=i < len(chunks) - 1, continuation=i > 0))
    return lines


def frame(cap: int, *reads: bytes) -> list[Line]:
    framer = LineFramer(cap)
    lines = []
    for data in reads:
        lines += framer.feed(data)
        assert framer.pending <= cap + 1
    return lines + framer.flush()


SAMPLES = [
    b"one\ntwo\r\nthree",
    b"\n\n\r\n\r\r\n",
    b"abcdefgh\nabcd\nabcde\nabcd\r\nabcde\r\nabcdefghi\r\n",
    b"abcd\rx\nabc\r\r\nabcdefgh\r\nxyzxyzxyzxyz",
    b"\rabcd\rabcd\r",
]


@pytest.mark.parametrize("data", SAMPLES)
def test_split_at_every_byte_boundary(data: bytes) -> None:
    """
    Cut into two reads at every offset, and into single bytes, the stream
    frames as it does whole.
    """
    whole = expected(data, 4)
    assert frame(4, data) == whole
    for i in range(len(data) + 1):
        assert frame(4, data[:i], data[i:]) == whole, i
    assert frame(4, *(data[i:i + 1] for i in range(len(data)))) == whole


@given(st.binary(max_size=80).map(lambda b: b.replace(b"a", b"\n").replace(b"b", b"\r")), st.data())
def test_any_stream_any_reads(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.sets(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    assert frame(3, *(data[a:b] for a, b in itertools.pairwise(bounds))) == expected(data, 3)


def test_lf_and_crlf() -> None:
    assert frame(MAX_LINE, b"a\r\nb\nc\r\n\r\nd\re\n") == [Line(b"a"), Line(b"b"), Line(b"c"), Line(b""), Line(b"d\re")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_line_of_exactly_the_cap_is_whole(ending: bytes) -> None:
    line = b"x" * MAX_LINE
    assert frame(MAX_LINE, line + ending + b"y\n") == [Line(line), Line(b"y")]
    assert frame(MAX_LINE, line, ending, b"y\n") == [Line(line), Line(b"y")]
    assert frame(MAX_LINE, line + ending[:1], ending[1:] + b"y\n") == [Line(line), Line(b"y")]


def test_one_byte_over_the_cap_is_cut() -> None:
    line = b"x" * MAX_LINE + b"z"
    lines = frame(MAX_LINE, line + b"\r\n")
    assert lines == [Line(b"x" * MAX_LINE, continues=True), Line(b"z", continuation=True)]
    assert lines[0].text().endswith(f" [cut at {MAX_LINE} bytes, continues]")
    assert lines[1].text() == "[continued] z"


def test_a_long_line_is_cut_into_marked_pieces_as_it_arrives() -> None:
    """
    The pieces of a line that never ends come out as its bytes arrive,
    not when (if ever) its newline does.
    """
    framer = LineFramer(MAX_LINE)
    pieces = []
    for _ in range(10):
        pieces += framer.feed(b"y" * 50_000)
        assert framer.pending <= MAX_LINE + 1
    assert [len(p.data) for p in pieces] == [MAX_LINE] * 7
    assert all(p.continues and not p.whole for p in pieces)
    assert [p.continuation for p in pieces] == [False] + [True] * 6
    [last] = framer.flush()
    assert last == Line(b"y" * (500_000 - 7 * MAX_LINE), continuation=True)
    assert framer.feed(b"next\n") == [Line(b"next")]


def test_huge_input_without_a_newline_in_linear_time() -> None:
    """
    32 MB without a newline in pipe-sized reads: each byte is looked at a
    bounded number of times, and memory holds at most one line.  (Framed by
    joining the pending bytes again on each read, this took minutes.)
    """
    chunk = b"e" * 8192
    framer = LineFramer()
    started = time.process_time()
    count = 0
    for _ in range(32 * 1024 * 1024 // len(chunk)):
        count += len(framer.feed(chunk))
        assert framer.pending <= MAX_LINE + 1
    elapsed = time.process_time() - started
    assert count == 32 * 1024 * 1024 // MAX_LINE - 1
    # Some 50 ms here; quadratic framing takes minutes.
    assert elapsed < 3.0


def test_many_short_lines_in_one_read() -> None:
    data = b"line\n" * 200_000
    started = time.process_time()
    lines = LineFramer().feed(data)
    assert len(lines) == 200_000 and lines[-1] == Line(b"line")
    assert time.process_time() - started < 3.0


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)
