"""Plugin host pieces that need no server: negotiation, the AutoMTLS identity, wire translation, usage."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from cryptography import x509

from engine.storage import InMemoryStorage
from plugin.framework import Response, Secret, StaticSystemView, UnsupportedPathError, raw_response
from plugin.host import tls, translate
from plugin.host.serve import NegotiationError, automtls_enabled, negotiate_protocol
from proto import backend_pb2


def test_protocol_negotiation_prefers_v5_and_falls_back_to_v4():
    assert negotiate_protocol({"PLUGIN_PROTOCOL_VERSIONS": "5"}) == 5
    assert negotiate_protocol({"PLUGIN_PROTOCOL_VERSIONS": "3,4"}) == 4
    with pytest.raises(NegotiationError):
        negotiate_protocol({"PLUGIN_PROTOCOL_VERSIONS": "3"})


def test_automtls_needs_flag_and_client_cert():
    assert automtls_enabled({"VAULT_PLUGIN_AUTOMTLS_ENABLED": "true", "PLUGIN_CLIENT_CERT": "x"})
    assert automtls_enabled({"BAO_PLUGIN_AUTOMTLS_ENABLED": "true", "PLUGIN_CLIENT_CERT": "x"})
    assert not automtls_enabled({"VAULT_PLUGIN_AUTOMTLS_ENABLED": "true"})


def test_identity_is_what_the_server_accepts():
    ident = tls.make_identity()
    assert "=" not in ident.handshake_cert
    der = base64.b64decode(ident.handshake_cert + "=" * (-len(ident.handshake_cert) % 4))
    cert = x509.load_der_x509_certificate(der)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in list(ekus)


def test_request_translation_reads_null_data_and_headers():
    pb = backend_pb2.Request(operation="read", path="roles/x", data="null", mount_point="pki/")
    pb.headers["X-Test"].header.append("1")
    req = translate.request_from_pb(pb, InMemoryStorage(), StaticSystemView())
    assert req.data == {} and req.path == "roles/x" and req.headers == {"X-Test": ["1"]}
    assert translate.request_from_pb(backend_pb2.Request(operation="bogus"), InMemoryStorage(),
                                     StaticSystemView()) is None


def test_raw_body_is_base64_and_empty_data_is_null():
    out = translate.response_to_pb(raw_response(b"test", "text/plain"))
    data = json.loads(out.data)
    assert base64.b64decode(data["http_raw_body"]) == b"test" and data["http_content_type"] == "text/plain"
    assert translate.response_to_pb(Response(warnings=["w"])).data == "null"


def test_secret_carries_issue_time_and_nanoseconds():
    out = translate.response_to_pb(Response(data={}, secret=Secret(internal_data={"secret_type": "pki"}, ttl=60)))
    assert out.secret.lease_options.TTL == 60 * 10**9
    assert out.secret.lease_options.issue_time.seconds > 0
    assert json.loads(out.secret.internal_data) == {"secret_type": "pki"}


def test_errors_map_to_vault_types():
    err = translate.error_to_pb(UnsupportedPathError())
    assert (err.err_type, err.err_msg) == (6, "unsupported path")


def test_run_by_hand_explains_and_fails():
    env = {k: v for k, v in os.environ.items() if k != "VAULT_BACKEND_PLUGIN"}
    proc = subprocess.run([sys.executable, "-m", "plugin.main"], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode != 0
    assert "plugin register" in proc.stderr and proc.stdout == ""


def test_handshake_line_over_unix_and_tcp(tmp_path):
    """Start the real executable as the server would and read its handshake line, for both transports."""
    import select

    root = os.path.dirname(os.path.dirname(__file__))
    import tempfile

    short = tempfile.mkdtemp(prefix="pp-")   # pytest's tmp_path can itself exceed a socket path's limit
    for sockdir, network in ((short, "unix"), (str(tmp_path / ("d" * 120)), "tcp")):
        os.makedirs(sockdir, exist_ok=True)
        env = dict(os.environ, VAULT_BACKEND_PLUGIN="6669da05-b1c8-4f49-97d9-c8e5bed98e20",
                   PLUGIN_PROTOCOL_VERSIONS="5", VAULT_PLUGIN_AUTOMTLS_ENABLED="true",
                   PLUGIN_CLIENT_CERT=tls.make_identity().cert_pem.decode(), PLUGIN_UNIX_SOCKET_DIR=sockdir)
        proc = subprocess.Popen([sys.executable, "-m", "plugin.main"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=root, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "no handshake line"
            parts = proc.stdout.readline().strip().split("|")
            assert parts[:3] == ["1", "5", network] and parts[4] == "grpc" and parts[5]
            if network == "unix":
                assert parts[3].startswith(sockdir) and os.path.exists(parts[3])
        finally:
            proc.terminate()
            proc.wait(10)


def test_launcher_does_not_serve_when_reimported_by_a_worker(tmp_path):
    """multiprocessing re-imports the main script as __mp_main__; that must not start a second plugin."""
    from plugin.launcher import install_launcher

    launcher, _ = install_launcher(tmp_path)
    env = dict(os.environ, VAULT_BACKEND_PLUGIN="6669da05-b1c8-4f49-97d9-c8e5bed98e20",
               PLUGIN_PROTOCOL_VERSIONS="5")
    proc = subprocess.run([sys.executable, "-c",
                           f"import runpy; runpy.run_path({str(launcher)!r}, run_name='__mp_main__')"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_special_paths_reply_declares_ocsp_binary_for_vault() -> None:
    """Vault reads field 6 (`binary`) of pb.Paths to hand POSTed OCSP DER bodies to the plugin."""
    import asyncio

    from engine.backend import build_backend
    from plugin.host.services import BackendService, Lifecycle, MountInstance

    class Stream:
        metadata = {"multiplex_id": "m"}
        sent: list = []

        async def recv_message(self):
            return None

        async def send_message(self, msg) -> None:
            self.sent.append(msg)

    service = BackendService(build_backend, broker=None, life=Lifecycle())  # type: ignore[arg-type]
    service._mounts["m"] = MountInstance(backend=build_backend(), storage=None, system=None,  # type: ignore
                                         channel=None)
    stream = Stream()
    asyncio.run(service.SpecialPaths(stream))
    wire = stream.sent[0].SerializeToString()
    paths = backend_pb2.SpecialPathsReply.FromString(wire).paths
    assert list(paths.binary) == ["ocsp", "ocsp/*"]
    assert backend_pb2.Paths.DESCRIPTOR.fields_by_name["binary"].number == 6
    assert "ocsp" in paths.unauthenticated
