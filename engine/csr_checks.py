"""What every path that takes a CSR refuses before using it, as the built-in engine's CSR parser refuses it.

Go's x509 parser rejects a CSR whose URI SANs do not parse as URLs (control characters, bad escapes), whose
EC key is on a curve other than P-224/256/384/521 or has explicit curve parameters, and whose subject strings
are not valid for their type. pyca/cryptography accepts all of these, so we check them here. Beyond the
built-in, no name with a control character is accepted from a CSR (subject or SAN): such a name reaches
certificates, logs and the terminals that show them.
"""
from __future__ import annotations

from asn1crypto import csr as asn1csr
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from engine.names import has_control_chars
from engine.uri_names import go_quote, has_uri_problem
from plugin.framework import UserError

_CURVES = (ec.SECP224R1, ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_PREFIX = "certificate request could not be parsed: "


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    _check_key(csr)
    try:
        subject = csr.subject
        values = [attr.value for attr in subject]
    except ValueError:
        raise UserError(_PREFIX + "invalid subject: an attribute value is not a valid string of its type") from None
    for value in values:
        if isinstance(value, str) and has_control_chars(value):
            raise UserError(_PREFIX + f'the subject holds a control character in "{go_quote(value)}"')
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if has_uri_problem(uri):
            raise UserError(_PREFIX + f'cannot parse URI "{go_quote(uri)}"')
    for kind in (x509.DNSName, x509.RFC822Name):
        for name in sans.get_values_for_type(kind):
            if has_control_chars(name):
                raise UserError(_PREFIX + f'the SAN "{go_quote(name)}" holds a control character')


def _check_key(csr: x509.CertificateSigningRequest) -> None:
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return
    if not isinstance(key.curve, _CURVES):
        raise UserError(_PREFIX + "unsupported elliptic curve (P-224, P-256, P-384 and P-521 are accepted)")
    info = asn1csr.CertificationRequest.load(csr.public_bytes(Encoding.DER))["certification_request_info"]
    if info["subject_pk_info"]["algorithm"]["parameters"].name != "named":
        raise UserError(_PREFIX + "invalid ECDSA parameters (only named curves are accepted)")
