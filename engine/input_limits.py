"""Caps on the size of what one request may ask the plugin to parse or build.

One plugin process serves every mount, so no single request may make it do unbounded work. The built-in engine
has no such caps (the server's 32 MiB request limit is its only bound); ours are far above anything a real CSR,
certificate or bundle needs, and a request above them gets a 400 before any parsing. The README lists them.
"""
from __future__ import annotations

from cryptography import x509

from plugin.framework import UserError

MAX_CSR_BYTES = 128 * 1024          # PEM text of one CSR (or one certificate for sign-self-issued)
MAX_EXTENSIONS = 100                # extensions in a CSR or in a certificate to re-sign
MAX_SANS = 1000                     # subject alternative names one request may ask for, all kinds together
MAX_PEM_BUNDLE_BYTES = 1024 * 1024  # an import bundle (issuers/import/*, config/ca)
MAX_PEM_BLOCKS = 500                # certificates and keys in one bundle


def check_text_size(text: str, what: str, limit: int = MAX_CSR_BYTES) -> None:
    if len(text) > limit:
        raise UserError(f"{what} is larger than {limit} bytes, which this plugin does not accept")


def check_extension_count(extensions: x509.Extensions, what: str) -> None:
    if len(extensions) > MAX_EXTENSIONS:
        raise UserError(f"{what} has more than {MAX_EXTENSIONS} extensions, which this plugin does not accept")


def check_name_count(count: int) -> None:
    if count > MAX_SANS:
        raise UserError(f"the request asks for more than {MAX_SANS} names, which this plugin does not accept")


def check_bundle(text: str, blocks: int) -> None:
    check_text_size(text, "the PEM bundle", MAX_PEM_BUNDLE_BYTES)
    if blocks > MAX_PEM_BLOCKS:
        raise UserError(f"the PEM bundle has more than {MAX_PEM_BLOCKS} blocks, which this plugin does not accept")
