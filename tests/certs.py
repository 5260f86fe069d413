"""
Self-signed certificates made with the C{openssl} command, and HTTPS clients
that trust them.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from pathlib import Path

from server import TIMEOUT


def makeCertificate(directory: Path, name: str = "server", commonName: str = "localhost") -> tuple[Path, Path]:
    """
    A self-signed certificate for C{localhost} and 127.0.0.1, as
    C{(key, certificate)} PEM files named after C{name} in C{directory}.
    """
    key, certificate = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", f"/CN={commonName}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    return key, certificate


def clientContext(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


def httpsConnection(port: int, certificate: Path, timeout: float = TIMEOUT) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", port, timeout=timeout, context=clientContext(certificate))


def httpsGet(port: int, certificate: Path, path: str = "/") -> tuple[int, bytes, str]:
    """
    One GET over a new TLS connection that checks the server's certificate:
    the status, the body and the certificate's common name.
    """
    connection = httpsConnection(port, certificate)
    try:
        connection.connect()
        # Now: a response that closes its connection takes the socket along.
        name = peerName(connection.sock)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), name
    finally:
        connection.close()


def peerName(sock: ssl.SSLSocket) -> str:
    subject = dict(entry[0] for entry in sock.getpeercert()["subject"])
    return subject["commonName"]


def readAll(sock: socket.socket) -> bytes:
    """
    Everything the server sends until it closes the connection (a reset
    counts as a close).
    """
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data
