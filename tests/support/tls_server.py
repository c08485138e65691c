"""A throwaway PKI and a TLS endpoint in front of a plain-http service, for tests.

``make_pki(directory)`` writes a CA, a server certificate for 127.0.0.1 and a client
certificate (PEM files) made with ``cryptography``. ``TlsTerminator`` accepts TLS on a
port of 127.0.0.1 and pipes the decrypted bytes to a plain-http upstream (the local job
service), so a real client talks real TLS to the real service; it can require a client
certificate signed by the CA (mutual TLS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of the PEM files ``make_pki`` wrote."""

    ca: Path  # the CA certificate (what a client's ca_bundle names)
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path  # the client certificate followed by its key, in one file
    client_key_encrypted: Path  # the client key protected by the passphrase "secret"
    other_ca: Path  # a CA that signed nothing here (trusting it must not help)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign and crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Write a fresh CA, server and client certificates under ``directory`` (valid for a day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("jobservice test CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "127.0.0.1", server=True)
    client_key, client_cert = _leaf(ca_key, ca_cert, "jobservice test client", server=False)
    _, other_ca_cert = _ca("some other CA")
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        client_combined=directory / "client-combined.pem",
        client_key_encrypted=directory / "client-key-encrypted.pem",
        other_ca=directory / "other-ca.pem",
    )
    pki.ca.write_bytes(_cert_pem(ca_cert))
    pki.server_cert.write_bytes(_cert_pem(server_cert))
    pki.server_key.write_bytes(_key_pem(server_key))
    pki.client_cert.write_bytes(_cert_pem(client_cert))
    pki.client_key.write_bytes(_key_pem(client_key))
    pki.client_combined.write_bytes(_cert_pem(client_cert) + _key_pem(client_key))
    pki.client_key_encrypted.write_bytes(_key_pem(client_key, b"secret"))
    pki.other_ca.write_bytes(_cert_pem(other_ca_cert))
    for key_file in (pki.server_key, pki.client_key, pki.client_combined, pki.client_key_encrypted):
        key_file.chmod(0o600)
    return pki


def server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """The TLS settings of the test endpoint: its certificate, and the CA its clients must come from."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsTerminator:
    """``with TlsTerminator(upstream_url, context) as tls``; ``tls.url`` is the https address.

    Every connection that completes the TLS handshake is piped byte for byte to the upstream.
    ``connections`` counts the connections; ``handshakes`` those that completed the handshake and
    ``refused`` those that did not (a client without the required certificate, or one that does
    not trust us); these two are only final once the client has seen the outcome and the
    server's thread has caught up.

    It runs in threads with blocking sockets, as OpenSSL does in nginx and the like: a refused
    handshake sends its TLS alert (``certificate required``…) to the client before closing.
    asyncio's server-side TLS drops the connection without the alert, which would hide from the
    client why it was refused.
    """

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.context = context
        self.connections = 0
        self.handshakes = 0
        self.refused = 0
        self.url = ""
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> TlsTerminator:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._listener is not None
        # shutdown() wakes the accept() blocked in the other thread, which close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self._track(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # Counted before the handshake: a client cannot see this server's certificate (nor
        # fail on it) before this thread has started the handshake.
        self.connections += 1
        conn.settimeout(10)
        # The handshake by hand: wrap_socket's own closes the socket the moment it fails.
        tls = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError):
            self.refused += 1
            _lingering_close(tls)
            return
        self.handshakes += 1
        tls.settimeout(None)
        self._track(tls)
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            tls.close()
            return
        self._track(upstream)
        back = threading.Thread(target=_pipe, args=(upstream, tls), daemon=True)
        back.start()
        _pipe(tls, upstream)
        back.join()
        tls.close()
        upstream.close()


def _lingering_close(conn: socket.socket) -> None:
    """Close after the TLS alert as nginx does (``lingering_close``): stop sending, read what the
    client still sends, then close. Closing at once would make the kernel answer the client's
    next bytes with a reset, which may reach the client before the alert that says why."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)  # on an SSLSocket this also drops TLS: recv reads raw bytes
        conn.settimeout(2)
        while conn.recv(65536):
            pass
    conn.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy until end of stream, then pass the end on."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
        if not isinstance(target, ssl.SSLSocket):
            target.shutdown(socket.SHUT_WR)
        else:
            target.shutdown(socket.SHUT_RDWR)
    except OSError:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)
