"""ACME problem documents (RFC 8555 section 6.7): one exception per failure, each knowing its type and status."""
from __future__ import annotations

import json
from typing import Any

TYPE_PREFIX = "urn:ietf:params:acme:error:"

# name -> (HTTP status, the built-in's text for it)
PROBLEMS: dict[str, tuple[int, str]] = {
    "accountDoesNotExist": (400, "The request specified an account that does not exist"),
    "alreadyRevoked": (400, "The request specified a certificate to be revoked that has already been revoked"),
    "badCSR": (400, "The CSR is unacceptable"),
    "badNonce": (400, "The client sent an unacceptable anti-replay nonce"),
    "badPublicKey": (400, "The JWS was signed by a public key the server does not support"),
    "badRevocationReason": (400, "The revocation reason provided is not allowed by the server"),
    "badSignatureAlgorithm": (400, "The JWS was signed with an algorithm the server does not support"),
    "caa": (403, "Certification Authority Authorization (CAA) records forbid the CA from issuing a certificate"),
    "compound": (400, "Specific error conditions are indicated in the 'subproblems' array"),
    "connection": (500, "The server could not connect to validation target"),
    "dns": (500, "There was a problem with a DNS query during identifier validation"),
    "externalAccountRequired": (401, "The request must include a value for the 'externalAccountBinding' field"),
    "incorrectResponse": (400, "Response received didn't match the challenge's requirements"),
    "invalidContact": (400, "A contact URL for an account was invalid"),
    "malformed": (400, "The request message was malformed"),
    "orderNotReady": (403, "The request attempted to finalize an order that is not ready to be finalized"),
    "rateLimited": (429, "The request exceeds a rate limit"),
    "rejectedIdentifier": (400, "The server will not issue certificates for the identifier"),
    "serverInternal": (500, "The server experienced an internal error"),
    "tls": (500, "The server received a TLS error during validation"),
    "unauthorized": (401, "The client lacks sufficient authorization"),
    "unsupportedContact": (400, "A contact URL for an account used an unsupported protocol scheme"),
    "unsupportedIdentifier": (400, "An identifier is of an unsupported type"),
    "userActionRequired": (401, "Visit the 'instance' URL and take actions specified there"),
}


class AcmeProblem(Exception):
    """Raised by ACME handlers; answered as application/problem+json with the problem's status."""

    def __init__(self, name: str, detail: str = "", *, prefix: str = "", suffix: str = "",
                 subproblems: list["AcmeProblem"] | None = None) -> None:
        status, text = PROBLEMS[name]
        if not detail:
            # The built-in words its details as "<context>: <generic text>" or "<generic text>: <context>".
            detail = ": ".join(p for p in (prefix, text, suffix) if p)
        super().__init__(detail)
        self.name = name
        self.status = status
        self.detail = detail
        self.subproblems = subproblems or []

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.name

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, "detail": self.detail}
        # Omitted when empty: certbot fails on a null subproblems (the built-in once sent null).
        if self.subproblems:
            doc["subproblems"] = [p.document() for p in self.subproblems]
        return doc

    def body(self) -> bytes:
        return json.dumps(self.document()).encode()

    def stored(self) -> dict[str, Any]:
        """The form shown in a challenge's `error` (the built-in's: with the status and a subproblems list)."""
        return self.document() | {"status": self.status, "subproblems": [p.document() for p in self.subproblems]}


def problem(name: str, *, prefix: str = "", suffix: str = "") -> AcmeProblem:
    return AcmeProblem(name, prefix=prefix, suffix=suffix)


class AcmeDisabled(Exception):
    """ACME is off (or public ACME is disabled by the environment): every ACME path answers a plain 404."""
