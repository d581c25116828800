"""Token failures while the engine runs: each gives a clear error naming the managed key, then recovery."""
from __future__ import annotations

import asyncio
import logging

import pytest
from cryptography.hazmat.primitives import hashes
from pkcs11 import Attribute, ObjectClass

from engine.hsm import service, token as token_mod
from engine.hsm.config import ManagedKeyStore
from engine.hsm.signer import HsmSigningKey
from plugin.framework import Operation, VaultError
from tests.engine.hsm_helpers import Mount, managed_key_body
from tests.hsm_fixtures import softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm


def _setup(hsm, kind: str = "ec", bits: int = 256) -> tuple[str, HsmSigningKey, Mount]:
    mount = Mount()
    label = hsm.new_token()
    mount.ok(Operation.UPDATE, "managed-keys/hsm1", managed_key_body(hsm, label, "ca", kind, bits))
    cfg = asyncio.run(ManagedKeyStore(mount.storage).get("hsm1"))
    pub, _ = asyncio.run(service.ensure_token_key(cfg))
    return label, service.signing_key(cfg, pub), mount


def _sign(key: HsmSigningKey) -> str:
    """'ok' or the user-facing error (status + message)."""
    try:
        sig = asyncio.run(key.asign_bytes(b"tbs", hashes.SHA256()))
    except VaultError as exc:
        return f"{exc.status} {exc.message}"
    assert sig
    return "ok"


def test_token_reinitialised_while_running_then_restored(softhsm):  # noqa: F811
    label, key, _ = _setup(softhsm)
    assert _sign(key) == "ok"
    backup = softhsm.backup(label)

    softhsm.reinit_token(label)                # empty token, same label, same PIN
    assert _sign(key) == '400 managed key "hsm1": no private key with label "ca" in the token'

    softhsm.restore(label, backup)
    assert _sign(key) == "ok"


def test_token_removed_then_back(softhsm):  # noqa: F811
    label, key, _ = _setup(softhsm)
    backup = softhsm.backup(label)
    softhsm.delete_token(label)
    assert _sign(key) == f'400 managed key "hsm1": no token found at token label "{label}"'
    softhsm.restore(label, backup)
    assert _sign(key) == "ok"


def test_pin_changed_behind_our_back_then_fixed(softhsm, monkeypatch):  # noqa: F811
    label, key, _ = _setup(softhsm)
    backup = softhsm.backup(label)
    softhsm.reinit_token(label, pin="4321")
    assert _sign(key) == f'400 managed key "hsm1": the token at token label "{label}" rejected the PIN'
    # A rejected PIN is not presented again for a while (real HSMs lock the PIN after a few failures).
    assert "not trying it again for a while" in _sign(key)

    softhsm.restore(label, backup)
    monkeypatch.setattr(token_mod, "PIN_RETRY_SECONDS", 0.0)
    assert _sign(key) == "ok"


def test_key_deleted_from_token_then_restored(softhsm):  # noqa: F811
    label, key, _ = _setup(softhsm)
    backup = softhsm.backup(label)
    _destroy_key_objects(softhsm.library, label, "ca")
    assert _sign(key) == '400 managed key "hsm1": no private key with label "ca" in the token'
    softhsm.restore(label, backup)
    assert _sign(key) == "ok"


def test_lost_sessions_are_reopened_transparently(softhsm):  # noqa: F811
    label, key, _ = _setup(softhsm)
    assert _sign(key) == "ok"
    pool = key._pool().pool()
    with pool.module.lock:
        for ps in list(pool._idle):
            ps.session.close()   # the token forgets them; the pool still holds their handles
    assert _sign(key) == "ok"


def test_replaced_key_under_the_same_label_is_detected(softhsm):  # noqa: F811
    label, key, mount = _setup(softhsm)
    softhsm.reinit_token(label)
    cfg = asyncio.run(ManagedKeyStore(mount.storage).get("hsm1"))
    asyncio.run(service.ensure_token_key(cfg))   # a new key pair under the old label
    assert _sign(key) == ('400 managed key "hsm1": the token key with label "ca" is not the key this issuer was '
                          "created with (signature does not verify)")


def test_device_failure_is_a_503_naming_the_key(softhsm, monkeypatch):  # noqa: F811
    label, key, _ = _setup(softhsm)
    import pkcs11.exceptions as p11e

    def broken(ref, *args):
        def op(ps):
            raise p11e.DeviceError()
        return op

    monkeypatch.setattr("engine.hsm.signer.sign_op", broken)
    assert _sign(key) == '503 managed key "hsm1": the token failed (DeviceError); try again once it is back'
    monkeypatch.undo()
    assert _sign(key) == "ok"


def test_concurrent_signing_shares_the_pool(softhsm):  # noqa: F811
    _, key, _ = _setup(softhsm, "rsa", 2048)

    async def many() -> list[bytes]:
        return await asyncio.gather(*(key.asign_bytes(f"tbs {i}".encode(), hashes.SHA256()) for i in range(32)))

    signatures = asyncio.run(many())
    pub = key.public_key()
    from cryptography.hazmat.primitives.asymmetric import padding
    for i, sig in enumerate(signatures):
        pub.verify(sig, f"tbs {i}".encode(), padding.PKCS1v15(), hashes.SHA256())
    pool = key._pool().pool()
    assert len(pool._idle) <= pool.size


def test_no_key_material_or_pin_in_logs(softhsm, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    label, key, _ = _setup(softhsm)
    softhsm.reinit_token(label, pin="4321")
    _sign(key)
    text = caplog.text
    assert "1234" not in text and "4321" not in text
    assert "BEGIN" not in text


def _destroy_key_objects(library: str, token_label: str, key_label: str) -> None:
    module = token_mod.module_for(library)
    with module.lock:
        tok = module.lib().get_token(token_label=token_label)
        # The engine's pool is logged in to this token; a bare session shares that login.
        with tok.open(rw=True) as session:
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: key_label})):
                    obj.destroy()



def test_token_recovery_on_the_event_loop_keeps_tls_connections_alive(softhsm, tmp_path):  # noqa: F811
    """The plugin talks to the server over TLS on its event loop; re-initialising the module must not break it.

    Issuance calls the blocking signing API from the event loop; the token recovery it triggers (module
    C_Finalize + C_Initialize) used to leave an OpenSSL error on that thread, which the next TLS read took
    for its own failure.
    """
    import ssl
    import subprocess

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=localhost",
                    "-days", "1"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    label, key, _ = _setup(softhsm)
    backup = softhsm.backup(label)

    async def scenario() -> list[str]:
        async def echo(reader, writer):
            while data := await reader.read(100):
                writer.write(data)
                await writer.drain()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        seen = []

        async def ping(tag: bytes) -> None:
            writer.write(tag)
            await writer.drain()
            seen.append((await asyncio.wait_for(reader.read(100), 5)).decode())

        await ping(b"before")
        softhsm.reinit_token(label)
        try:
            key.sign_bytes(b"tbs", hashes.SHA256())   # blocking call on the loop, as issuance makes it
        except VaultError as exc:
            seen.append(exc.message)
        await ping(b"after-failure")
        softhsm.restore(label, backup)
        key.sign_bytes(b"tbs", hashes.SHA256())
        await ping(b"after-recovery")
        writer.close()
        server.close()
        return seen

    assert asyncio.run(scenario()) == ["before", 'managed key "hsm1": no private key with label "ca" in the token',
                                       "after-failure", "after-recovery"]
