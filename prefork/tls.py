"""
TLS on the listening sockets: what the master checks at start and what
every worker builds after its fork.

Twisted's C{ssl:} endpoint loads its certificate as the description is
parsed, and C{listenSSL} wraps the connections of the port it opens; neither
survives the handover of the bare socket to the workers, who would serve it
as plain TCP.  So what travels instead is the description's TLS half, as a
L{TLSSettings}: the master parses the description here, opens a plain TCP
socket on its address and checks that the files make a working context;
every worker builds its own context from the same settings after the fork
and wraps its port's factory in a L{TLSMemoryBIOFactory}.  Each worker reads
the files afresh, so a new generation (a reload) serves renewed
certificates.

Two descriptions are understood, as Twisted parses them:

  - C{ssl:PORT:privateKey=KEY:certKey=CERT}, with the options
    C{extraCertChain=CHAIN}, C{dhParameters=DH}, C{sslmethod=METHOD},
    C{interface=IP} and C{backlog=N} too, on IPv4, each option optional
    (C{privateKey} defaults to C{server.pem}, which then holds the
    certificate too);
  - C{tls:DIRECTORY:port=PORT:interface=IP:backlog=N}, on IPv6 (and IPv4
    through it), serving the certificates with their keys found in the
    C{.pem} files of DIRECTORY, chosen by the name the client asks for
    (SNI), where the installed Twisted has this endpoint.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

#: What an application speaks over TLS, announced through ALPN.  Twisted's
#: sites also offer HTTP/2 when the h2 package is installed; a worker's
#: connections speak HTTP/1.1 only.
ALPN_PROTOCOLS = (b"http/1.1",)


class TLSConfigError(ValueError):
    """
    A TLS description cannot be served; the message says which part and why.
    """


class TLSUnsupported(TLSConfigError):
    """
    The installed Twisted has no endpoint of the kind a TLS description
    names (C{tls:} is newer than some supported releases).
    """


@dataclass(frozen=True)
class TLSSettings:
    """
    The TLS half of a C{ssl:} or C{tls:} description, with absolute paths.

    @ivar kind: C{"ssl"} or C{"tls"}.
    @ivar privateKey: The PEM file of the private key (C{ssl}).
    @ivar certKey: The PEM file of the certificate (C{ssl}).
    @ivar extraCertChain: A PEM file of the certificates between the
        certificate and a root, or L{None} (C{ssl}).
    @ivar dhParameters: A PEM file of Diffie-Hellman parameters, or L{None}
        (C{ssl}).
    @ivar sslmethod: The name of an C{OpenSSL.SSL} method constant, or
        L{None} (C{ssl}).
    @ivar directory: The directory of PEM files (C{tls}).
    """

    kind: str
    privateKey: str | None = None
    certKey: str | None = None
    extraCertChain: str | None = None
    dhParameters: str | None = None
    sslmethod: str | None = None
    directory: str | None = None

    def toDict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def fromDict(cls, values: dict[str, Any]) -> TLSSettings:
        return cls(**values)


@dataclass(frozen=True)
class TLSAddress:
    """
    Where a TLS description listens: a TCP port on IPv4 (C{ssl}) or IPv6
    (C{tls}).
    """

    ipv6: bool
    port: int
    interface: str
    #: The listen queue's length, if the description gives one.
    backlog: int | None


def splitDescription(description: str) -> tuple[list[str], dict[str, str]]:
    """
    The positional and named arguments of an endpoint description, split as
    Twisted's C{serverFromString} splits them: on colons, C{NAME=VALUE}
    (only the first C{=} counts), a backslash escaping the character after
    it.

    @raise TLSConfigError: It ends in a lone backslash.
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    pieces: list[str] = []
    current: list[str] = []
    operators = ":="
    characters = iter(description)
    for character in characters:
        if character in operators:
            pieces.append("".join(current))
            current = []
            if character == ":":
                _addArgument(pieces, args, kwargs)
                pieces, operators = [], ":="
            else:
                operators = ":"
        elif character == "\\":
            escaped = next(characters, None)
            if escaped is None:
                raise TLSConfigError(f"{description!r} ends in a lone backslash")
            current.append(escaped)
        else:
            current.append(character)
    pieces.append("".join(current))
    _addArgument(pieces, args, kwargs)
    return args, kwargs


def _addArgument(pieces: list[str], args: list[str], kwargs: dict[str, str]) -> None:
    if len(pieces) == 1:
        args.append(pieces[0])
    else:
        kwargs[pieces[0]] = pieces[1]


def _sslArguments(
    port: str,
    privateKey: str = "server.pem",
    certKey: str | None = None,
    sslmethod: str | None = None,
    interface: str = "",
    backlog: str | None = None,
    extraCertChain: str | None = None,
    dhParameters: str | None = None,
) -> tuple[TLSSettings, TLSAddress]:
    # The signature of Twisted's own ssl: parser, so that positional
    # arguments mean what they mean to serverFromString.
    settings = TLSSettings(
        "ssl",
        privateKey=_absolute(privateKey),
        certKey=_absolute(certKey or privateKey),
        extraCertChain=None if extraCertChain is None else _absolute(extraCertChain),
        dhParameters=None if dhParameters is None else _absolute(dhParameters),
        sslmethod=sslmethod,
    )
    return settings, TLSAddress(False, _integer("port", port), interface, _backlog(backlog))


def _tlsArguments(
    path: str, port: str = "443", backlog: str | None = None, interface: str = "::"
) -> tuple[TLSSettings, TLSAddress]:
    # The signature of Twisted's tls: server parser.
    settings = TLSSettings("tls", directory=_absolute(path))
    return settings, TLSAddress(True, _integer("port", port), interface, _backlog(backlog))


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _integer(name: str, value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise TLSConfigError(f"{name} must be a number, not {value!r}")
    return int(value)


def _backlog(value: str | None) -> int | None:
    return None if value is None else _integer("backlog", value)


def parseTLSDescription(description: str) -> tuple[TLSSettings, TLSAddress] | None:
    """
    The TLS settings and the address of a C{ssl:} or C{tls:} description;
    L{None} for any other kind.

    @raise TLSConfigError: It is malformed, or has an option that this
        server (or Twisted) does not know.
    """
    args, kwargs = splitDescription(description)
    kind = args[0].lower()
    if kind not in ("ssl", "tls"):
        return None
    parser = _sslArguments if kind == "ssl" else _tlsArguments
    try:
        return parser(*args[1:], **kwargs)
    except TypeError:
        known = ", ".join(name for name in parser.__code__.co_varnames[: parser.__code__.co_argcount])
        raise TLSConfigError(f"{kind}: takes the options {known}; {description!r} has others (or too many)") from None


def connectionCreator(settings: TLSSettings) -> Any:
    """
    What a L{TLSMemoryBIOFactory} makes its server connections with, built
    from the files C{settings} names, read now.

    @raise TLSConfigError: pyOpenSSL is missing, or a file is missing,
        unreadable, not what it should be, or the key does not match the
        certificate.
    """
    try:
        from twisted.internet import ssl
    except ImportError:
        raise TLSConfigError("TLS needs pyOpenSSL: pip install 'twisted[tls]'") from None
    if settings.kind == "tls":
        return _directoryCreator(settings)
    return _certificateOptions(ssl, settings)


def _certificateOptions(ssl: Any, settings: TLSSettings) -> Any:
    """
    The context Twisted's C{ssl:} endpoint makes of the same files.
    """
    from OpenSSL import SSL, crypto
    from twisted.internet.error import VerifyError

    assert settings.privateKey is not None and settings.certKey is not None
    certificatePEM = _read(settings.certKey, "certificate")
    keyPEM = _read(settings.privateKey, "private key")
    try:
        certificate = ssl.Certificate.loadPEM(certificatePEM)
    except (crypto.Error, ValueError):
        raise TLSConfigError(f"{settings.certKey} holds no PEM certificate") from None
    try:
        key = ssl.KeyPair(crypto.load_privatekey(crypto.FILETYPE_PEM, keyPEM, passphrase=_refusePassphrase))
    except _Encrypted:
        raise TLSConfigError(
            f"{settings.privateKey} holds an encrypted private key; no passphrase can be given"
        ) from None
    except (crypto.Error, ValueError, TypeError):
        raise TLSConfigError(f"{settings.privateKey} holds no PEM private key") from None
    try:
        private = ssl.PrivateCertificate.fromCertificateAndKeyPair(certificate, key)
    except VerifyError:
        raise TLSConfigError(
            f"the private key in {settings.privateKey} does not match the certificate in {settings.certKey}"
        ) from None
    options: dict[str, Any] = {}
    if settings.sslmethod is not None:
        method = getattr(SSL, settings.sslmethod, None)
        if not settings.sslmethod.endswith("_METHOD") or method is None:
            raise TLSConfigError(f"sslmethod {settings.sslmethod!r} is not an OpenSSL method, e.g. TLS_METHOD")
        options["method"] = method
    if settings.extraCertChain is not None:
        options["extraCertChain"] = _chain(ssl, settings.extraCertChain)
    if settings.dhParameters is not None:
        _read(settings.dhParameters, "Diffie-Hellman parameters")
        options["dhParameters"] = ssl.DiffieHellmanParameters.fromFile(_filePath(settings.dhParameters))
    creator = ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        acceptableProtocols=list(ALPN_PROTOCOLS),
        **options,
    )
    try:
        creator.getContext()
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise TLSConfigError(f"OpenSSL refuses the TLS settings of {settings.certKey}: {_sslReason(e)}") from None
    return creator


class _Encrypted(Exception):
    pass


def _refusePassphrase(*args: object) -> bytes:
    # OpenSSL would otherwise ask for the passphrase on the terminal, and
    # block a server's start on it.
    raise _Encrypted()


def _chain(ssl: Any, path: str) -> list[Any]:
    # As Twisted's ssl: endpoint reads extraCertChain.
    found = re.findall(
        r"(-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----)",
        _read(path, "certificate chain").decode("ascii", "replace"),
        flags=re.DOTALL,
    )
    if not found:
        raise TLSConfigError(f"{path} holds no PEM certificate for extraCertChain")
    return [ssl.Certificate.loadPEM(pem).original for pem in found]


def _directoryCreator(settings: TLSSettings) -> Any:
    """
    What Twisted's C{tls:} endpoint makes of a directory of PEM files: a
    connection creator that picks a certificate by the client's SNI name.
    """
    from OpenSSL import SSL, crypto
    from twisted.internet import reactor
    from twisted.internet.endpoints import quoteStringArgument, serverFromString

    assert settings.directory is not None
    if not os.path.isdir(settings.directory):
        raise TLSConfigError(f"tls: {settings.directory} is not a directory")
    _refuseEncryptedKeys(settings.directory)
    try:
        endpoint = serverFromString(reactor, f"tls:{quoteStringArgument(settings.directory)}:port=0")
        creator = endpoint.connectionCreator
        served = SSL.Connection(creator.defaultContext).get_certificate()
    except ValueError as e:
        raise TLSUnsupported(f"tls: is not known to this Twisted: {e}") from None
    except (OSError, SSL.Error, crypto.Error, AttributeError) as e:
        raise TLSConfigError(f"tls: cannot load the PEM files in {settings.directory}: {_sslReason(e)}") from None
    if served is None:
        raise TLSConfigError(f"tls: {settings.directory} holds no certificate with its private key in a .pem file")
    return creator


def _refuseEncryptedKeys(directory: str) -> None:
    """
    Refuse a directory whose PEM files hold an encrypted key: Twisted would
    have OpenSSL ask for its passphrase on the terminal.
    """
    for folder, _, names in os.walk(directory):
        for name in names:
            if name.endswith(".pem"):
                path = os.path.join(folder, name)
                content = _read(path, "PEM file")
                if b"ENCRYPTED PRIVATE KEY" in content or b"Proc-Type: 4,ENCRYPTED" in content:
                    raise TLSConfigError(f"{path} holds an encrypted private key; no passphrase can be given")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read the {what} {path}: {e.strerror}") from None


def _filePath(path: str) -> Any:
    from twisted.python.filepath import FilePath

    return FilePath(path)


def _sslReason(error: Exception) -> str:
    """
    One line for an OpenSSL error, whose message is a list of tuples.
    """
    details = error.args[0] if error.args else error
    if isinstance(details, list):
        entries = (" ".join(part for part in entry if part) for entry in details if isinstance(entry, tuple))
        return "; ".join(entries) or str(error)
    return str(error)
