"""PKCS#11 modules, tokens and session pools (everything here blocks: callers run it on `EXECUTOR`).

Three facts shape this module:
- python-pkcs11 calls C_Initialize without CKF_OS_LOCKING_OK, which tells the module the application will not
  call it from several threads at once (SoftHSM then runs without its mutexes). So every call into one module
  holds that module's lock; the session pool still bounds how many requests wait on a token and keeps logged-in
  sessions ready, and sessions are never shared between two operations.
- Login is per application and token, not per session: the first session of a pool logs in and the others ride
  on it. So there is one pool per token, keyed by what the token is (module + serial number), shared by every
  managed key on it, whether it names the token by slot or by label; and since C_Login on a token already
  logged in answers CKR_USER_ALREADY_LOGGED_IN without looking at the PIN, the pool remembers which PIN earned
  the login and hands sessions only to callers presenting that PIN (see `TokenPool`).
- A module only notices tokens created, deleted or re-initialised by other processes after C_Finalize +
  C_Initialize, so recovery from a lost session or a re-initialised token re-initialises the module (which
  invalidates every pool on it; each notices by the module's generation number) and retries once.
- Modules share the process's OpenSSL and may leave entries on the calling thread's OpenSSL error queue
  (SoftHSM 2.6 leaves ENGINE "no such engine" after C_Initialize/C_Finalize). Python's ssl module then takes
  that stale entry for a failure of the next TLS read on the thread and drops the connection, which for the
  plugin is its link to the server. So PKCS#11 calls run only on our own `pkcs11` threads, even when a caller
  uses the blocking API from the event loop, and the queue is cleared after initialisation anyway.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from engine.hsm import der
from engine.hsm.errors import ManagedKeyConfigError, TokenUnavailableError

log = logging.getLogger("python-pki.hsm")
T = TypeVar("T")

_on_pkcs11_thread = threading.local()


def _mark_thread() -> None:
    _on_pkcs11_thread.flag = True


EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pkcs11", initializer=_mark_thread)


def _clear_openssl_errors() -> None:
    lib = _libcrypto()
    if lib is not None:
        lib.ERR_clear_error()


_libcrypto_handle: Any = None


def _libcrypto() -> Any:
    """The process's shared libcrypto (the one Python's ssl module and most PKCS#11 modules link)."""
    global _libcrypto_handle
    if _libcrypto_handle is None:
        import ctypes
        import ssl  # noqa: F401 - make sure the shared libcrypto is the one already loaded
        import ctypes.util

        name = ctypes.util.find_library("crypto")
        try:
            _libcrypto_handle = ctypes.CDLL(name) if name else False
        except OSError:
            _libcrypto_handle = False
    return _libcrypto_handle or None

# After the token refuses a PIN we stop presenting it for a while: real HSMs lock the user PIN after a few
# failures, and every issuance request would otherwise be one more failed login. Rewriting the managed key
# (or a restart) clears the wait.
PIN_RETRY_SECONDS = 60.0

# Errors after which the session, the token or the module's view of it is gone: re-initialise and retry once.
_RECOVERABLE = (
    p11e.GeneralError, p11e.SessionHandleInvalid, p11e.SessionClosed, p11e.DeviceRemoved, p11e.DeviceError,
    p11e.TokenNotPresent, p11e.TokenNotRecognised, p11e.SlotIDInvalid, p11e.DeviceMemory, p11e.FunctionFailed,
    p11e.UserNotLoggedIn,
)
_STALE_HANDLE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)
# The token will not use this key this way: a configuration problem, not an outage.
_REFUSED = (p11e.MechanismInvalid, p11e.MechanismParamInvalid, p11e.KeyTypeInconsistent, p11e.FunctionNotSupported,
            p11e.KeySizeRange, p11e.TemplateInconsistent, p11e.TemplateIncomplete, p11e.AttributeValueInvalid,
            p11e.DomainParamsInvalid)

_EC_OIDS = {
    "1.2.840.10045.3.1.7": ec.SECP256R1(),
    "1.3.132.0.34": ec.SECP384R1(),
    "1.3.132.0.35": ec.SECP521R1(),
}
_CURVE_OIDS = {256: "1.2.840.10045.3.1.7", 384: "1.3.132.0.34", 521: "1.3.132.0.35"}
_ED25519_OID = "1.3.101.112"

_RSA_MECHS = {
    "sha256": (Mechanism.SHA256_RSA_PKCS, Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384_RSA_PKCS, Mechanism.SHA384_RSA_PKCS_PSS, Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512_RSA_PKCS, Mechanism.SHA512_RSA_PKCS_PSS, Mechanism.SHA512, MGF.SHA512),
}


@dataclass(frozen=True)
class KeyRef:
    """Where a key lives inside its token; `name` is the managed key's name, for messages."""

    name: str
    label: str = ""
    ck_id: bytes | None = None

    def template(self, object_class: ObjectClass) -> dict[Any, Any]:
        attrs: dict[Any, Any] = {Attribute.CLASS: object_class}
        if self.label:
            attrs[Attribute.LABEL] = self.label
        if self.ck_id:
            attrs[Attribute.ID] = self.ck_id
        return attrs

    def describe(self) -> str:
        parts = []
        if self.label:
            parts.append(f'label "{self.label}"')
        if self.ck_id:
            parts.append(f"id 0x{self.ck_id.hex()}")
        return " and ".join(parts)


class _KeyMissing(Exception):
    pass


class KeyNotInToken(ManagedKeyConfigError):
    """The token (as the module sees it after a refresh) has no such key."""


# ---------------------------------------------------------------------------------------------------------------
# Modules


class Module:
    """One loaded PKCS#11 library, its call lock and a generation bumped on every re-initialisation."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.generation = 0
        self._lib: Any = None

    def lib(self) -> Any:
        with self.lock:
            if self._lib is None:
                try:
                    self._lib = pkcs11.lib(self.path)
                except p11e.PKCS11Error as exc:
                    if _is_load_failure(exc):
                        raise _LoadFailed() from None
                    raise
                finally:
                    _clear_openssl_errors()
            return self._lib

    def reinitialize(self) -> None:
        with self.lock:
            self.generation += 1
            if self._lib is None:
                return
            try:
                self._lib.reinitialize()
            except p11e.PKCS11Error:
                # A half-finalised module: drop our handle so the next use loads it afresh.
                pkcs11.unload(self.path)
                self._lib = None
            finally:
                _clear_openssl_errors()


_modules: dict[str, Module] = {}
_modules_lock = threading.Lock()


def module_for(path: str) -> Module:
    # One Module per file: two paths (a symlink and its target) must share one lock and one login state.
    path = os.path.realpath(path)
    with _modules_lock:
        mod = _modules.get(path)
        if mod is None:
            mod = _modules[path] = Module(path)
        return mod


# ---------------------------------------------------------------------------------------------------------------
# Session pools


@dataclass
class PooledSession:
    session: Any
    generation: int
    logs_in: bool                                   # closing this one logs the application out of the token
    keys: dict[tuple[KeyRef, Any], Any] = field(default_factory=dict)   # object lookups, valid for this session


class PinNotVerified(ManagedKeyConfigError):
    """The caller's PIN is not the one the token was logged in with, and the login cannot be re-checked now."""


class TokenPool:
    """The sessions of one token (module + serial number) and the PIN whose C_Login made them usable.

    The login is shared by everything in the process, so the pool remembers which PIN earned it: a caller
    presenting another PIN gets no session, however it named the token.
    """

    def __init__(self, module: Module, serial: bytes, size: int) -> None:
        self.module = module
        self.serial = serial
        self.size = size
        self.sem = threading.BoundedSemaphore(size)
        self._state = threading.Lock()
        self._idle: list[PooledSession] = []
        self._open_count = 0
        self._logged_in = False
        self._verified_digest: str | None = None    # PIN whose C_Login returned CKR_OK for the current login
        self._generation = module.generation
        self._pin_rejected_at: dict[str, float] = {}

    # -- called with the module lock held ----------------------------------------------------------------------

    def run_once(self, token: Any, where: str, key_name: str, pin: str, op: Callable[[PooledSession], T]) -> T:
        ps = self._checkout(token, where, key_name, pin)
        try:
            result = op(ps)
        except _STALE_HANDLE:
            ps.keys.clear()
            result = op(ps)
        except BaseException:
            self._checkin(ps)
            raise
        self._checkin(ps)
        return result

    def verify(self, token: Any, where: str, key_name: str, pin: str) -> None:
        """Prove `pin` against the token itself: reuse a login it earned, else log out and log in with it."""
        self._sync_generation()
        if self._logged_in and self._verified_digest == _digest(pin):
            return
        if self._logged_in:
            # Trying this PIN logs everyone else out: a PIN the token just refused must wait, so that rewriting a
            # managed key with a wrong PIN over and over neither disrupts the other users nor runs the token
            # into its PIN lockout.
            self.check_pin_wait(key_name, where, pin)
        self.reset(close=True)        # closing the logged-in session logs the application out of the token
        self._pin_rejected_at.pop(_digest(pin), None)
        self._checkin(self._open(token, where, key_name, pin))

    def reset(self, close: bool) -> None:
        """Forget every session (closing them when the module is still the one that opened them)."""
        with self._state:
            idle, self._idle = self._idle, []
            self._open_count = 0
            self._logged_in = False
            self._verified_digest = None
            stale = self._generation != self.module.generation
            self._generation = self.module.generation
        if close and not stale:
            # Close the logged-in session last: closing it logs the whole application out of the token.
            for ps in sorted(idle, key=lambda p: p.logs_in):
                try:
                    ps.session.close()
                except p11e.PKCS11Error:
                    pass

    def check_pin_wait(self, key_name: str, where: str, pin: str) -> None:
        rejected = self._pin_rejected_at.get(_digest(pin))
        if rejected is not None and time.monotonic() - rejected < PIN_RETRY_SECONDS:
            raise ManagedKeyConfigError(key_name, f"the token at {where} rejected the PIN; not trying it "
                                                  "again for a while (rewrite the managed key to retry now)")

    # -- internals ----------------------------------------------------------------------------------------------

    def _sync_generation(self) -> None:
        if self._generation != self.module.generation:
            self.reset(close=False)

    def _checkout(self, token: Any, where: str, key_name: str, pin: str) -> PooledSession:
        self._sync_generation()
        if self._logged_in and self._verified_digest != _digest(pin):
            # One user PIN per token: ours differs from the one that logged in, so it is not accepted here.
            raise PinNotVerified(key_name, f"the token at {where} is logged in with a different PIN than this "
                                           "managed key's; rewrite the managed key with the token's PIN")
        with self._state:
            if self._idle:
                return self._idle.pop()
        return self._open(token, where, key_name, pin)

    def _checkin(self, ps: PooledSession) -> None:
        if ps.generation != self.module.generation:
            return
        with self._state:
            self._idle.append(ps)

    def _open(self, token: Any, where: str, key_name: str, pin: str) -> PooledSession:
        login = not self._logged_in
        try:
            session = token.open(user_pin=pin if login else None, rw=True)
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange) as exc:
            self._pin_rejected_at[_digest(pin)] = time.monotonic()
            log.warning("managed key %s: token rejected the PIN (%s)", key_name, type(exc).__name__)
            raise ManagedKeyConfigError(key_name, f"the token at {where} rejected the PIN") from None
        except p11e.PinLocked:
            raise ManagedKeyConfigError(key_name, f"the user PIN of the token at {where} is locked") from None
        except p11e.UserPinNotInitialized:
            raise ManagedKeyConfigError(key_name, f"the token at {where} has no user PIN set") from None
        except p11e.UserAlreadyLoggedIn:
            # Someone in this process holds a login we do not track, so C_Login never checked our PIN: that
            # is no proof of it. Re-initialising the module ends every login; the caller retries once.
            raise _ForeignLogin() from None
        if login:
            self._pin_rejected_at.pop(_digest(pin), None)
            self._logged_in = True
            self._verified_digest = _digest(pin)
        with self._state:
            self._open_count += 1
        return PooledSession(session=session, generation=self.module.generation, logs_in=login)


class TokenHandle:
    """How one managed key reaches its token: where it is (slot or label), the PIN it was given, a pool size.

    Each use finds the token, then its pool by serial number, so a slot and a label naming the same token share
    one pool and one login, and the handle's own PIN is checked against that login every time.
    """

    def __init__(self, library: str, slot: int | None, token_label: str, pin: str, size: int) -> None:
        self.library = library
        self.slot = slot
        self.token_label = token_label
        self._pin = pin
        self.size = size

    @property
    def module(self) -> Module:
        return module_for(self.library)

    def run(self, key_name: str, op: Callable[[PooledSession], T]) -> T:
        """Run `op` on a pooled session under the module lock; recover once from a lost session/token.

        Blocks the caller; the PKCS#11 calls themselves always happen on a `pkcs11` executor thread.
        """
        return self._on_pkcs11_thread(self._run, key_name, op)

    def verify(self, key_name: str) -> None:
        """Log in with this handle's PIN (or find the current login was earned with it); raises if refused."""
        self._on_pkcs11_thread(self._with_recovery, key_name,
                               lambda pool, token: pool.verify(token, self.where(), key_name, self._pin))

    def pool(self) -> TokenPool:
        return self._on_pkcs11_thread(self._with_recovery, "", lambda pool, token: pool)

    def where(self) -> str:
        return f"slot {self.slot}" if self.slot is not None else f'token label "{self.token_label}"'

    # -- internals ----------------------------------------------------------------------------------------------

    @staticmethod
    def _on_pkcs11_thread(fn: Callable[..., T], *args: Any) -> T:
        if not getattr(_on_pkcs11_thread, "flag", False):
            return EXECUTOR.submit(fn, *args).result()
        return fn(*args)

    def _run(self, key_name: str, op: Callable[[PooledSession], T]) -> T:
        pool = self._with_recovery(key_name, lambda pool, token: pool)
        pool.check_pin_wait(key_name, self.where(), self._pin)
        with pool.sem:
            return self._with_recovery(
                key_name, lambda pool, token: pool.run_once(token, self.where(), key_name, self._pin, op))

    def _on_module(self, step: Callable[[TokenPool, Any], T]) -> T:
        module = self.module
        with module.lock:
            token = _find_token(module, self.slot, self.token_label)
            return step(_pool_of(module, token, self.size), token)

    def _with_recovery(self, key_name: str, step: Callable[[TokenPool, Any], T]) -> T:
        module = self.module
        for attempt in (1, 2):
            try:
                return self._on_module(step)
            except _RECOVERABLE as exc:
                if attempt == 2:
                    log.warning("managed key %s: token still failing after re-initialisation: %s",
                                key_name, type(exc).__name__)
                    raise TokenUnavailableError(key_name, f"the token failed ({_reason(exc)}); "
                                                          "try again once it is back") from None
                log.info("managed key %s: %s from the token; re-initialising the module",
                         key_name, type(exc).__name__)
                module.reinitialize()
            except (KeyNotInToken, _NoToken, _ForeignLogin) as exc:
                if attempt == 2:
                    if isinstance(exc, _NoToken):
                        raise ManagedKeyConfigError(key_name, f"no token found at {self.where()}") from None
                    if isinstance(exc, _ForeignLogin):
                        raise ManagedKeyConfigError(key_name, f"the token at {self.where()} is logged in by "
                                                              "another user of the module; cannot check the PIN"
                                                    ) from None
                    raise
                # The module's view of the token may predate a restore or re-initialisation, or hold a login
                # we did not make: refresh once.
                module.reinitialize()
            except _LoadFailed:
                raise ManagedKeyConfigError(key_name, "the PKCS#11 module could not be loaded") from None
            except _REFUSED as exc:
                raise ManagedKeyConfigError(key_name, f"the token refused the operation ({_reason(exc)})") from None
            except p11e.PKCS11Error as exc:
                log.warning("managed key %s: token error %s", key_name, type(exc).__name__)
                raise TokenUnavailableError(key_name, f"the token failed ({_reason(exc)})") from None
        raise AssertionError("unreachable")


class _NoToken(Exception):
    pass


class _LoadFailed(Exception):
    pass


class _ForeignLogin(Exception):
    pass


def _is_load_failure(exc: BaseException) -> bool:
    return str(exc).startswith(("OS exception while loading", "Unknown exception while loading"))


def _digest(pin: str) -> str:
    return hashlib.sha256(pin.encode()).hexdigest()


def _reason(exc: BaseException) -> str:
    # python-pkcs11 messages are the CKR_* name at most; never anything from the key.
    return type(exc).__name__


def _find_token(module: Module, slot_id: int | None, token_label: str) -> Any:
    """The token a slot id or label names, as the module sees it now (module lock held)."""
    for slot in module.lib().get_slots(token_present=True):
        if slot_id is not None:
            if slot.slot_id == slot_id:
                return slot.get_token()
            continue
        token = slot.get_token()
        if token.label == token_label:
            return token
    raise _NoToken()


# Keyed by what the token is (module file + serial number), never by how a managed key named it.
_pools: dict[tuple[str, bytes], TokenPool] = {}
_pools_lock = threading.Lock()


def _pool_of(module: Module, token: Any, size: int) -> TokenPool:
    key = (module.path, bytes(token.serial))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = TokenPool(module, key[1], size)
        return pool


def handle_for(library: str, slot: int | None, token_label: str, pin: str, size: int) -> TokenHandle:
    return TokenHandle(library, slot, token_label, pin, size)

# ---------------------------------------------------------------------------------------------------------------
# Operations (each runs inside TokenHandle.run, i.e. with a session and the module lock)


def _find_one(ps: PooledSession, ref: KeyRef, object_class: ObjectClass) -> Any:
    cache_key = (ref, object_class)
    hit = ps.keys.get(cache_key)
    if hit is not None:
        return hit
    found = list(ps.session.get_objects(ref.template(object_class)))
    if not found:
        raise _KeyMissing()
    if len(found) > 1:
        raise ManagedKeyConfigError(ref.name, f"{len(found)} keys in the token match {ref.describe()}; "
                                              "set key_id as well to pick one")
    ps.keys[cache_key] = found[0]
    return found[0]


def _missing(ref: KeyRef, what: str = "private key") -> KeyNotInToken:
    return KeyNotInToken(ref.name, f"no {what} with {ref.describe()} in the token")


def sign_op(ref: KeyRef, key_type: str, data: bytes, hash_alg: hashes.HashAlgorithm | None,
            use_pss: bool) -> Callable[[PooledSession], bytes]:
    """A signature over `data` in the encoding X.509 wants (DER ECDSA-Sig-Value for EC)."""

    def op(ps: PooledSession) -> bytes:
        try:
            priv = _find_one(ps, ref, ObjectClass.PRIVATE_KEY)
        except _KeyMissing:
            raise _missing(ref) from None
        try:
            if key_type == "rsa":
                assert hash_alg is not None
                plain, pss, digest_mech, mgf = _RSA_MECHS[hash_alg.name]
                if use_pss:
                    return bytes(priv.sign(data, mechanism=pss,
                                           mechanism_param=(digest_mech, mgf, hash_alg.digest_size)))
                return bytes(priv.sign(data, mechanism=plain))
            if key_type == "ec":
                assert hash_alg is not None
                h = hashes.Hash(hash_alg)
                h.update(data)
                raw = bytes(priv.sign(h.finalize(), mechanism=Mechanism.ECDSA))
                half = len(raw) // 2
                return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
            return bytes(priv.sign(data, mechanism=Mechanism.EDDSA))
        except _REFUSED:
            raise ManagedKeyConfigError(ref.name, f"the token refused to sign with this key as {key_type}"
                                                  f"{' PSS' if use_pss else ''}") from None

    return op


def public_key_op(ref: KeyRef) -> Callable[[PooledSession], CertificatePublicKeyTypes]:
    """The key pair's public half read from the token's public key object (KeyNotInToken when absent)."""

    def op(ps: PooledSession) -> CertificatePublicKeyTypes:
        try:
            _find_one(ps, ref, ObjectClass.PRIVATE_KEY)
        except _KeyMissing:
            raise _missing(ref) from None
        try:
            pub = _find_one(ps, ref, ObjectClass.PUBLIC_KEY)
        except _KeyMissing:
            raise ManagedKeyConfigError(ref.name, f"the token has a private key with {ref.describe()} but no "
                                                  "public key object beside it") from None
        return public_key_from_object(ref, pub)

    return op


def public_key_from_object(ref: KeyRef, pub: Any) -> CertificatePublicKeyTypes:
    kt = pub[Attribute.KEY_TYPE]
    if kt == KeyType.RSA:
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    params = der.parse_one(bytes(pub[Attribute.EC_PARAMS]))
    point = bytes(pub[Attribute.EC_POINT])
    if point[:1] == bytes([der.OCTET_STRING]):
        point = der.octet_string_content(point)   # PKCS#11 wraps the point in DER; a few modules do not
    oid = der.oid_dotted(params.value) if params.tag == der.OBJECT_IDENTIFIER else ""
    if kt == KeyType.EC and oid in _EC_OIDS:
        return ec.EllipticCurvePublicKey.from_encoded_point(_EC_OIDS[oid], point)
    if kt == KeyType.EC_EDWARDS and (oid == _ED25519_OID or params.tag == 0x13 and params.value == b"edwards25519"):
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    raise ManagedKeyConfigError(ref.name, "the token key is of a type or curve we cannot use")


def generate_op(ref: KeyRef, key_type: str, key_bits: int) -> Callable[[PooledSession], CertificatePublicKeyTypes]:
    """A new key pair inside the token: private half sensitive, never extractable, persistent, signing only."""

    def op(ps: PooledSession) -> CertificatePublicKeyTypes:
        try:
            _find_one(ps, ref, ObjectClass.PRIVATE_KEY)
        except _KeyMissing:
            pass
        else:
            raise ManagedKeyConfigError(ref.name, f"the token already holds a key with {ref.describe()}")
        common: dict[Any, Any] = {Attribute.TOKEN: True}
        if ref.label:
            common[Attribute.LABEL] = ref.label
        if ref.ck_id:
            common[Attribute.ID] = ref.ck_id
        private = {**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                   Attribute.SIGN: True, Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                   Attribute.DERIVE: False}
        public = {**common, Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
        session = ps.session
        if key_type == "rsa":
            public[Attribute.MODULUS_BITS] = key_bits
            public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
            pub, _ = session.generate_keypair(KeyType.RSA, key_bits, store=True, public_template=public,
                                              private_template=private)
        else:
            oid = _CURVE_OIDS[key_bits] if key_type == "ec" else _ED25519_OID
            kt = KeyType.EC if key_type == "ec" else KeyType.EC_EDWARDS
            mech = Mechanism.EC_KEY_PAIR_GEN if key_type == "ec" else Mechanism.EC_EDWARDS_KEY_PAIR_GEN
            public[Attribute.EC_PARAMS] = der.encode(der.OBJECT_IDENTIFIER, der.oid_body(oid))
            pub, _ = session.generate_keypair(kt, store=True, mechanism=mech, public_template=public,
                                              private_template=private)
        ps.keys.clear()
        return public_key_from_object(ref, pub)

    return op


def attributes_op(ref: KeyRef, names: list[Attribute]) -> Callable[[PooledSession], dict[Attribute, Any]]:
    """Non-secret attributes of the private key (CKA_SENSITIVE, CKA_EXTRACTABLE...), read back from the token."""

    def op(ps: PooledSession) -> dict[Attribute, Any]:
        try:
            priv = _find_one(ps, ref, ObjectClass.PRIVATE_KEY)
        except _KeyMissing:
            raise _missing(ref) from None
        return {name: priv[name] for name in names}

    return op
