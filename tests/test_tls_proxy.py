"""TLS (wss), mutual TLS, HTTP CONNECT proxies and the User-Agent (scenario 9).

A throwaway PKI (CA, server certificate for 127.0.0.1, client certificates) is made with
the ``cryptography`` package; the proxy is a small asyncio CONNECT proxy written here that
requires Basic auth and records what it saw."""
from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json

import pytest

from conftest import _LoopThread, closed_port_url

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

HANDSHAKE_FAILED = 4


# ---------------------------------------------------------------------------- PKI
def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca, cn, usage, san=None):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             ca_key.public_key()), critical=False))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    def __init__(self, d):
        self.dir = d
        ca = _ca("sora_ffi e2e CA")
        other_ca = _ca("some other CA")
        srv = _leaf(ca, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        wrong_host = _leaf(ca, "elsewhere.example", ExtendedKeyUsageOID.SERVER_AUTH,
                           [x509.DNSName("elsewhere.example")])
        cli = _leaf(ca, "e2e client", ExtendedKeyUsageOID.CLIENT_AUTH)
        foreign_cli = _leaf(other_ca, "foreign client", ExtendedKeyUsageOID.CLIENT_AUTH)
        self.ca_pem = _pem(ca[0])
        self.other_ca_pem = _pem(other_ca[0])
        self.client_cert, self.client_key = _pem(cli[0]), _pem(cli[1])
        self.foreign_cert, self.foreign_key = _pem(foreign_cli[0]), _pem(foreign_cli[1])
        self.ca_file = self._write("ca.pem", self.ca_pem)
        self.server_cert = self._write("server.pem", _pem(srv[0]))
        self.server_key = self._write("server.key", _pem(srv[1]))
        self.wrong_host_cert = self._write("wrong.pem", _pem(wrong_host[0]))
        self.wrong_host_key = self._write("wrong.key", _pem(wrong_host[1]))

    def _write(self, name, data):
        p = self.dir / name
        p.write_bytes(data)
        return str(p)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(make_server, pki):
    return make_server(tls_cert=pki.server_cert, tls_key=pki.server_key)


@pytest.fixture
def mtls_server(make_server, pki):
    return make_server(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_file)


def _expect_connected(c):
    c.connect()
    assert c.offer["sdp"].startswith("v=0")
    code, _ = c.disconnect()
    assert code == 0
    assert c.ws_closes == [(1000, "TYPE-DISCONNECT")]


def _expect_handshake_failure(c, server):
    c.connect(wait=False)
    code, message = c.wait_disconnected()
    assert code == HANDSHAKE_FAILED, (code, message)
    assert c.signaling == [] and c.offer is None
    assert server.connections() == []


# ---------------------------------------------------------------------------- TLS
def test_wss_verified_with_ca_cert(sdk, tls_server, channel_id, clients, pki):
    assert tls_server.signaling_url.startswith("wss://127.0.0.1:")
    _expect_connected(clients(sdk, tls_server, channel_id, ca_cert=pki.ca_pem))


def test_wss_unknown_ca_fails(sdk, tls_server, channel_id, clients, pki):
    _expect_handshake_failure(clients(sdk, tls_server, channel_id), tls_server)
    _expect_handshake_failure(
        clients(sdk, tls_server, channel_id, ca_cert=pki.other_ca_pem), tls_server)


def test_wss_insecure(sdk, tls_server, channel_id, clients):
    _expect_connected(clients(sdk, tls_server, channel_id, insecure=True))


def test_wss_hostname_mismatch_ffi(ffi, make_server, channel_id, clients, pki):
    """A certificate from the right CA but for another host name is refused (unless
    insecure). sora_ffi only: sora_sdk 2025.4.0 does not check the host name at all (it
    connects to this server with ca_cert alone)."""
    server = make_server(tls_cert=pki.wrong_host_cert, tls_key=pki.wrong_host_key)
    _expect_handshake_failure(clients(ffi, server, channel_id, ca_cert=pki.ca_pem), server)
    _expect_connected(clients(ffi, server, channel_id, insecure=True))


def test_mtls(sdk, mtls_server, channel_id, clients, pki):
    _expect_connected(clients(sdk, mtls_server, channel_id, ca_cert=pki.ca_pem,
                              client_cert=pki.client_cert, client_key=pki.client_key))


def test_mtls_without_or_with_foreign_client_cert_fails(sdk, mtls_server, channel_id,
                                                        clients, pki):
    _expect_handshake_failure(clients(sdk, mtls_server, channel_id, ca_cert=pki.ca_pem),
                              mtls_server)
    _expect_handshake_failure(
        clients(sdk, mtls_server, channel_id, ca_cert=pki.ca_pem,
                client_cert=pki.foreign_cert, client_key=pki.foreign_key), mtls_server)


# --------------------------------------------------------------------------- proxy
class ConnectProxy(_LoopThread):
    """HTTP CONNECT proxy on 127.0.0.1 requiring ``Proxy-Authorization: Basic``.

    Records each request (request line, lower-cased headers) and the first bytes the client
    sent through each established tunnel."""

    def __init__(self, username="proxy-user", password="proxy-pässword"):
        self.username, self.password = username, password
        self.requests: list = []
        self.tunnel_heads: list = []

    @property
    def expected_auth(self):
        creds = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(creds).decode()

    async def _setup(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def _teardown(self):
        self.server.close()

    async def _handle(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except Exception:
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        self.requests.append((lines[0], headers))
        parts = lines[0].split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if headers.get("proxy-authorization") != self.expected_auth:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"e2e\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        host, port = parts[1].rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):  # never leave the machine
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        first = [True]

        async def pipe(src, dst, record):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if record and first[0]:
                        first[0] = False
                        self.tunnel_heads.append(data)
                    dst.write(data)
                    await dst.drain()
            except Exception:
                pass
            finally:
                try:
                    dst.close()
                except Exception:
                    pass

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))


@pytest.fixture
def proxy():
    with ConnectProxy() as p:
        yield p


def test_proxy_wss(sdk, tls_server, channel_id, clients, pki, proxy):
    """wss through an authenticating CONNECT proxy (the official SDK uses the proxy for
    wss:// URLs): the proxy sees CONNECT host:port with the Basic credentials."""
    c = clients(sdk, tls_server, channel_id, ca_cert=pki.ca_pem, proxy_url=proxy.url,
                proxy_username=proxy.username, proxy_password=proxy.password,
                proxy_agent="e2e-proxy-agent/1.0")
    _expect_connected(c)
    assert len(proxy.requests) == 1
    line, headers = proxy.requests[0]
    assert line == f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.1"
    assert headers["proxy-authorization"] == proxy.expected_auth
    # the tunnel carried TLS (a ClientHello), not plain HTTP
    assert proxy.tunnel_heads and proxy.tunnel_heads[0][:1] == b"\x16"


def test_proxy_wrong_credentials(sdk, tls_server, channel_id, clients, pki, proxy):
    c = clients(sdk, tls_server, channel_id, ca_cert=pki.ca_pem, proxy_url=proxy.url,
                proxy_username=proxy.username, proxy_password="wrong")
    _expect_handshake_failure(c, tls_server)
    assert len(proxy.requests) == 1
    wrong = "Basic " + base64.b64encode(f"{proxy.username}:wrong".encode()).decode()
    assert proxy.requests[0][1]["proxy-authorization"] == wrong


def test_proxy_down(sdk, tls_server, channel_id, clients, pki):
    c = clients(sdk, tls_server, channel_id, ca_cert=pki.ca_pem,
                proxy_url=closed_port_url("http").rsplit("/", 1)[0],
                proxy_username="u", proxy_password="p")
    _expect_handshake_failure(c, tls_server)


def test_proxy_agent_and_user_agent_ffi(ffi, server, channel_id, clients, proxy):
    """sora_ffi also proxies ws:// URLs; proxy_agent is the CONNECT request's User-Agent,
    user_agent the WebSocket handshake's (visible here because ws:// is not encrypted)."""
    c = clients(ffi, server, channel_id, proxy_url=proxy.url,
                proxy_username=proxy.username, proxy_password=proxy.password,
                proxy_agent="e2e-proxy-agent/1.0", user_agent="e2e-user-agent/2.0")
    _expect_connected(c)
    line, headers = proxy.requests[0]
    assert line == f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"
    assert headers["proxy-authorization"] == proxy.expected_auth
    assert headers["user-agent"] == "e2e-proxy-agent/1.0"
    head = proxy.tunnel_heads[0].decode("latin-1")
    assert head.startswith("GET /signaling HTTP/1.1\r\n")
    ws_headers = {k.strip().lower(): v.strip() for k, _, v in
                  (h.partition(":") for h in head.split("\r\n")[1:] if ":" in h)}
    assert ws_headers["user-agent"] == "e2e-user-agent/2.0"
    assert ws_headers["upgrade"].lower() == "websocket"


def test_user_agent_header(sdk, fake_ws_server, channel_id, clients):
    """user_agent is sent as the WebSocket handshake's User-Agent."""
    async def handler(fake, ws):
        await fake.recv_json(ws)
        await ws.close(1000, "BYE")

    fake = fake_ws_server(handler)
    c = clients(sdk, fake.url, channel_id, user_agent="e2e-user-agent/3.0")
    c.connect(wait=False)
    c.wait_disconnected()
    assert fake.headers[0]["user-agent"] == "e2e-user-agent/3.0"
    assert [json.loads(m)["type"] for m in fake.received] == ["connect"]
    assert c.ws_closes == [(1000, "BYE")]
