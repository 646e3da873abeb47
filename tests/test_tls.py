"""TLS listener (RFC 5425): certificates made at test time with ``cryptography``; Python's ssl client in process,
``openssl s_client`` and rsyslog's TLS drivers (gtls, ossl) against a real ``sylog serve``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, read_timeline, until, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sylog.config import Config, apply_overrides
from sylog.server.app import Server
from sylog.server.tls import cert_names, name_matches

# ---- certificates ---------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(d: Path, stem: str, cert: x509.Certificate, key: Any) -> None:
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def _ca(d: Path, stem: str, cn: str) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(d, stem, cert, key)
    return cert, key


def _leaf(d: Path, stem: str, cn: str, ca: tuple[x509.Certificate, Any], *, client: bool,
          ips: tuple[str, ...] = ()) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    san: list[x509.GeneralName] = [x509.DNSName(cn)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                  else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(d, stem, cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem; server.pem (sylog.test, 127.0.0.1); client.pem (client.test), web.pem (web-01.example.net);
    rogue.pem (client.test, signed by another CA) - the file names test_deploy_rsyslog_e2e's helpers use."""
    d = tmp_path_factory.mktemp("tlspki")
    ca = _ca(d, "ca", "sylog test CA")
    _leaf(d, "server", "sylog.test", ca, client=False, ips=("127.0.0.1",))
    _leaf(d, "client", "client.test", ca, client=True)
    _leaf(d, "web", "web-01.example.net", ca, client=True)
    other = _ca(d, "other-ca", "someone else's CA")
    _leaf(d, "rogue", "client.test", other, client=True)
    return d


# ---- names ----------------------------------------------------------------------------------------------------

def test_name_matching() -> None:
    assert name_matches("*.example.net", "web-01.example.net")
    assert name_matches("*.Example.NET", "WEB-01.example.net.")
    assert not name_matches("*.example.net", "example.net")
    assert not name_matches("*.example.net", "a.b.example.net")
    assert name_matches("client.test", "client.test") and not name_matches("client.test", "xclient.test")


def test_cert_names_prefers_san_over_cn() -> None:
    assert cert_names({"subject": ((("commonName", "cn.test"),),), "subjectAltName": (("DNS", "a.test"),
                                                                                        ("IP Address", "1.2.3.4"))}) \
        == ["a.test"]
    assert cert_names({"subject": ((("commonName", "cn.test"),),)}) == ["cn.test"]
    assert cert_names(None) == []


# ---- in process -----------------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(inproc_server: Any, pki: Path) -> Any:
    async def start(mutual: bool = False, **over: Any) -> Server:
        base: dict[str, Any] = {"listen.udp": [], "listen.tcp": [], "listen.tls": ["127.0.0.1:0"],
                                "tls.cert": str(pki / "server.pem"), "tls.key": str(pki / "server-key.pem")}
        if mutual:
            base["tls.client_ca"] = str(pki / "ca.pem")
        return await inproc_server(**{**base, **over})

    return start


def client_ctx(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}-key.pem")
    return ctx


def frame(host: str, text: str) -> bytes:
    m = f"<13>1 2026-11-25T10:00:00Z {host} app 1 - - {text}".encode()
    return b"%d %s" % (len(m), m)


async def send_tls(srv: Server, ctx: ssl.SSLContext, data: bytes) -> None:
    """Send over TLS and close; raises when the handshake is refused (TLS 1.3: maybe not, the client only learns
    of a refused certificate when it reads)."""
    host, port = srv.tls_addresses[0][:2]
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname="sylog.test"), 10)
    try:
        w.write(data)
        await w.drain()
    finally:
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass


async def test_tls_octet_counted_frames_are_stored(tls_server, pki: Path, tmp_path: Path) -> None:
    srv = await tls_server()
    await send_tls(srv, client_ctx(pki), b"".join(frame("tls-host", f"m{i}") for i in range(3)))
    lines = await until(lambda: len(read_timeline(tmp_path / "data", "tls-host")) >= 3 and
                        read_timeline(tmp_path / "data", "tls-host"), what="3 lines")
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == ["m0", "m1", "m2"]
    c = srv.counters
    assert c.tls_messages == 3 and c.tls_sessions == 1 and c.tls_handshakes >= 1 and c.tcp_messages == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_below_1_2_is_refused(tls_server, pki: Path) -> None:
    srv = await tls_server()
    ctx = client_ctx(pki)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
        await send_tls(srv, ctx, frame("old", "x"))
    assert srv.counters.tls_sessions == 0


async def test_mutual_tls_client_without_certificate_gets_nothing_in(tls_server, pki: Path,
                                                                     tmp_path: Path) -> None:
    srv = await tls_server(mutual=True)
    for cert in (None, "rogue"):  # no certificate; a certificate from another CA
        try:
            await send_tls(srv, client_ctx(pki, cert), frame("intruder", "let me in"))
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass  # refused in the handshake (TLS 1.3: the client may only notice when it reads)
    await until(lambda: srv.counters.tls_handshakes >= 2, what="both handshakes counted")
    await send_tls(srv, client_ctx(pki, "client"), frame("friend", "hello"))  # a valid client still gets in
    await until(lambda: read_timeline(tmp_path / "data", "friend"), what="the valid client's line")
    assert read_timeline(tmp_path / "data", "intruder") == []
    assert srv.counters.tls_sessions == 1 and srv.counters.tls_messages == 1


async def test_permitted_peers_by_certificate_name(tls_server, pki: Path, tmp_path: Path) -> None:
    srv = await tls_server(mutual=True, **{"tls.permitted_peers": ["*.example.net"]})
    try:
        await send_tls(srv, client_ctx(pki, "client"), frame("nope", "client.test is not *.example.net"))
    except (ssl.SSLError, ConnectionError):
        pass
    await until(lambda: srv.counters.tls_peer_rejected == 1, what="rejection counted")
    await send_tls(srv, client_ctx(pki, "web"), frame("web-01", "permitted"))
    await until(lambda: read_timeline(tmp_path / "data", "web-01"), what="permitted client's line")
    assert read_timeline(tmp_path / "data", "nope") == []


async def test_tls_allowlist_closes_before_anything_is_read(tls_server, pki: Path, tmp_path: Path) -> None:
    srv = await tls_server(**{"listen.tls_allow": ["10.0.0.0/8"]})
    try:
        await send_tls(srv, client_ctx(pki), frame("denied", "x"))
    except (ssl.SSLError, ConnectionError):
        pass
    await until(lambda: srv.counters.denied_connections == 1, what="denial counted")
    assert srv.counters.tls_messages == 0 and read_timeline(tmp_path / "data", "denied") == []


async def test_bad_certificate_files_fail_start_naming_the_file(tmp_path: Path, pki: Path) -> None:
    from sylog.server.listeners import BindError

    cfg = apply_overrides(Config(), {"data_dir": str(tmp_path / "d"), "listen.udp": [], "listen.tcp": [],
                                     "listen.tls": ["127.0.0.1:0"], "tls.cert": str(tmp_path / "missing.pem"),
                                     "tls.key": str(pki / "server-key.pem")})
    with pytest.raises(BindError, match="missing.pem"):
        await Server(cfg).start()


# ---- real clients against `sylog serve` ------------------------------------------------------------------------

def _tls_args(pki: Path, port: int, mutual: bool = True) -> list[str]:
    a = ["--tls", f"127.0.0.1:{port}", "--tls-cert", str(pki / "server.pem"), "--tls-key",
         str(pki / "server-key.pem")]
    if mutual:
        a += ["--tls-client-ca", str(pki / "ca.pem")]
    return a


def _openssl() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl not installed")
    return exe


@pytest.mark.realclient
def test_openssl_s_client_with_and_without_client_certificate(sylog_server_factory: Any, pki: Path) -> None:
    port = free_port("tcp")
    srv = sylog_server_factory(*_tls_args(pki, port))
    tag = uuid.uuid4().hex
    base = [_openssl(), "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki / "ca.pem"),
            "-verify_return_error", "-servername", "sylog.test", "-quiet", "-no_ign_eof"]
    good = frame("s-client", f"{tag} with cert")
    r = subprocess.run(base + ["-cert", str(pki / "client.pem"), "-key", str(pki / "client-key.pem")],
                       input=good, capture_output=True, timeout=30)
    lines = wait_for(lambda: [ln for ln in read_timeline(srv.data_dir, "s-client") if tag in ln], 10,
                     what="s_client's message", diagnose=lambda: r.stderr.decode(errors="replace") + srv.output())
    assert lines[0].endswith(f"{tag} with cert")
    bad = subprocess.run(base, input=frame("s-client", f"{tag} without cert"), capture_output=True, timeout=30)
    assert bad.returncode is not None  # s_client has finished: whatever it could send has been sent
    srv.send_tcp(frame("marker", f"{tag} marker"))  # over plain TCP: once it is stored, the TLS one would be too
    wait_for(lambda: read_timeline(srv.data_dir, "marker"), 10, what="marker")
    assert not [ln for ln in read_timeline(srv.data_dir, "s-client") if "without cert" in ln]


def _rsyslog_helpers() -> Any:
    import test_deploy_rsyslog_e2e as dep

    return dep


@pytest.mark.realclient
@pytest.mark.parametrize("driver", ["gtls", "ossl"])
def test_rsyslog_forwards_over_tls_into_sylog(tmp_path: Path, pki: Path, sylog_server_factory: Any,
                                              driver: str) -> None:
    if shutil.which("rsyslogd") is None and not Path("/usr/sbin/rsyslogd").exists():
        pytest.skip("rsyslogd not installed")
    dep = _rsyslog_helpers()
    dep._driver_installed(driver)
    port = free_port("tcp")
    srv = sylog_server_factory(*_tls_args(pki, port), "--context-lines", "10")
    rs = dep.Rsyslogd(tmp_path / "rs", dep._tls_conf(pki, port, driver))
    try:
        rs.start()
        tag = uuid.uuid4().hex
        rs.send(f"{tag} over tls via {driver}")
        lines = wait_for(lambda: [ln for ln in read_timeline(srv.data_dir, "testhost") if tag in ln], 30,
                         what=f"rsyslog ({driver}) message in sylog's timeline",
                         diagnose=lambda: rs.diagnose() + srv.output())
        assert lines[0].endswith(f"{tag} over tls via {driver}")
    finally:
        rs.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
