"""A second backend: certificates ordered from external ACME CAs (the open counterpart of Vault
Enterprise's "PKI external CA" plugin). Independent of the PKI engine; never imports grpc."""
from engine.external_ca.backend import build_backend

__all__ = ["build_backend"]
