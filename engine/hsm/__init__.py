"""CA keys inside PKCS#11 tokens (HSMs): managed key configs, session pools, token-side signing.

Importing this package registers the managed-key loader with `engine.signing`.
"""
from engine.hsm.config import ManagedKeyConfig, ManagedKeyStore
from engine.hsm.errors import ManagedKeyConfigError, TokenUnavailableError
from engine.hsm.service import load_managed_signing_key, resolve_kms_key
from engine.hsm.signer import HsmSigningKey

__all__ = ["HsmSigningKey", "ManagedKeyConfig", "ManagedKeyConfigError", "ManagedKeyStore", "TokenUnavailableError",
           "load_managed_signing_key", "resolve_kms_key"]
