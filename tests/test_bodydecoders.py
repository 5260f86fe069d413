"""
Unit tests of the request body decoders: a body framed by its length, and
a chunked one, with what follows each, and the chunked bodies refused.
"""

from __future__ import annotations

import pytest

from prefork.web.http import ChunkedDecoder, IdentityDecoder, Rejection


def decode(decoder: type[ChunkedDecoder], *pieces: bytes) -> tuple[bytes, list[bytes]]:
    received: list[bytes] = []
    finished: list[bytes] = []
    chunked = decoder(received.append, finished.append)
    for piece in pieces:
        chunked.dataReceived(piece)
    return b"".join(received), finished


def test_identity_body_and_what_follows() -> None:
    received: list[bytes] = []
    finished: list[bytes] = []
    decoder = IdentityDecoder(5, received.append, finished.append)
    decoder.dataReceived(b"ab")
    assert finished == []
    decoder.dataReceived(b"cdeGET / HTTP/1.1")
    assert received == [b"ab", b"cde"] and finished == [b"GET / HTTP/1.1"]
    with pytest.raises(RuntimeError):
        decoder.dataReceived(b"more")


def test_chunked_with_trailer_and_what_follows() -> None:
    body, finished = decode(
        ChunkedDecoder, b"3 ;a=b\r\nabc\r\n", b"A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n", b"\r\nNEXT"
    )
    assert body == b"abc0123456789" and finished == [b"NEXT"]


@pytest.mark.parametrize(
    "encoded",
    [
        b"x\r\n",  # not hex
        b"\r\n",  # no size
        b"-1\r\n",
        b"1 2\r\nab\r\n",
        b"10000000000000000\r\n",  # more than 63 bits
        b"3;a\\b\r\nabc\r\n",  # a backslash in an extension, as Twisted has it
        b"3;\x01\r\nabc\r\n",
        b"3\r\nabcX\r\n",  # no CRLF after the data
        b"1" * 1025,  # a chunk-size line too long
        b"0\r\n" + b"X-T: " + b"a" * 2**16 + b"\r\n",  # a trailer section too long
    ],
)
def test_malformed_chunked_is_refused(encoded: bytes) -> None:
    with pytest.raises(Rejection) as raised:
        decode(ChunkedDecoder, encoded)
    assert raised.value.code == 400


def test_chunked_size_line_split_anywhere() -> None:
    encoded = b"0000000000000004\r\nwiki\r\n0\r\n\r\n"
    for cut in range(1, len(encoded)):
        assert decode(ChunkedDecoder, encoded[:cut], encoded[cut:]) == (b"wiki", [b""])
