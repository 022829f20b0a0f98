"""Hostile HTTP servers on loopback: each connection gets a scripted answer, byte by byte.

A script is a function of the connection's number that returns (delay, bytes) steps: sleep
`delay` seconds, then send the bytes. It may be endless (a generator): the server stops when
the grader hangs up. After the script, the connection is closed (or held open: `hold`).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable

Step = tuple[float, bytes]
Script = Callable[[int], Iterable[Step]]


def response(status: str = "200 OK", body: bytes = b"", headers: Iterable[str] = (),
             length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def drip(data: bytes, every: float) -> Iterable[Step]:
    for i in range(len(data)):
        yield (every, data[i:i + 1])


class ScriptedServer:
    """Serves `script` to every connection on 127.0.0.1:<free port>, one thread each."""

    def __init__(self, script: Script, *, hold: bool = False, read_request: bool = True,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.script, self.hold, self.read_request, self.tls = script, hold, read_request, tls
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.host, self.port = self.listener.getsockname()[:2]
        self.stopping = threading.Event()
        self.connections = 0
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            number = self.connections
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(2)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # plain HTTP on a TLS port: the handshake fails, the socket closes
            if self.read_request:
                self.requests.append(_read_request(conn))
            for delay, data in self.script(number):
                if self.stopping.wait(delay) if delay else self.stopping.is_set():
                    return
                conn.sendall(data)
            while self.hold and not self.stopping.wait(0.05):
                pass
        except OSError:
            pass  # the grader hung up: that is how an endless script ends
        finally:
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        self.listener.close()


def blackhole(host: str = "127.0.0.1") -> list[socket.socket]:
    """A listener with a full accept queue that never accepts, as behind a security group
    that allows nothing: Linux drops new SYNs, so a connect times out. Returns the listener
    first, then the connections that fill its queue; close them all to end it."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(0)  # one queued connection fills it
    fillers = []
    for _ in range(4):  # the first fills the queue; later connects would block
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(listener.getsockname())
        fillers.append(s)
    _, done, _ = select.select([], fillers, [], 5)  # a handshake done: the queue is full
    assert any(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in done), done
    return [listener, *fillers]


def _read_request(conn: socket.socket) -> bytes:
    """The request's head and its Content-Length body, within 2 s."""
    conn.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value)
        while len(rest) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest
    except OSError:
        return data


def self_signed_context() -> ssl.SSLContext:
    """A server-side TLS context with a fresh self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        context.load_cert_chain(cert_path, key_path)
    return context
