"""OpenBao's CEL roles: cel/roles (list), cel/roles/:name (read, write, patch, delete), cel/issue/:role and
cel/sign/:role.

A CEL role is a program (engine.cel_eval) that sees the raw request as `request`, the time as `now`, whether a
CSR is signed as `use_csr` and that CSR as `parsed_csr`, and answers a `ValidationOutput` (a certificate template
plus issuance settings), a string (the request is refused with that text) or a bool (refused: "request denied").
Roles are stored as the built-in stores them (`cel/role/<name>`: name and validation_program).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine import cel_eval, cel_template, certstore
from engine.api.openapi_hints import label, pki
from engine.cel_eval import CelError, Message, Program
from engine.issuance import SECRET_TYPE, parse_csr, render, resolve_issuer
from engine.leaf import LeafProfile, build_leaf, leaf_hash
from engine.signing import generate_private_key, normalize_key_params, validate_signature_bits
from engine.storage import get_json, put_json
from engine.x509util import key_type_name, serial_to_colon_hex
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, Secret, UserError, \
    name_regex, paginate

if TYPE_CHECKING:
    from engine.context import PkiContext

PREFIX = "cel/role/"
_GO_KEY_ALGORITHMS = {"rsa": "RSA", "ec": "ECDSA", "ed25519": "Ed25519"}


async def load_role(storage: Any, name: str) -> Program | None:
    raw = await get_json(storage, PREFIX + name)
    if raw is None:
        return None
    return Program.from_json(raw.get("validation_program") or {})


def _role_data(name: str, program: Program) -> dict[str, Any]:
    return {"name": name, "cel_program": program.to_json()}


def _program_from(raw: Any, base: Program | None = None) -> Program:
    try:
        if base is None:
            program = Program.from_json(raw)
        else:
            if not isinstance(raw, dict):
                raise ValueError("'cel_program' must be a valid map")
            merged = base.to_json()
            merged.update(raw)
            program = Program.from_json(merged)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not program.expression:
        raise UserError("cel_program.expression cannot be empty")
    return program


async def _validated(program: Program) -> Program:
    try:
        await cel_eval.validate(program)
    except CelError as exc:
        raise UserError(str(exc)) from None
    return program


async def list_roles(req: Request, d: FieldData) -> Response | None:
    names = [k for k in await req.storage.list(PREFIX) if not k.endswith("/")]
    keys = paginate(names, d.get("after"), d.get("limit"))
    return Response(data={"keys": keys}) if keys else None


async def read_role(req: Request, d: FieldData) -> Response | None:
    program = await load_role(req.storage, d.get("name"))
    return Response(data=_role_data(d.get("name"), program)) if program is not None else None


async def write_role(req: Request, d: FieldData) -> Response | None:
    raw, given = d.get_ok("cel_program")
    if not given:
        raise UserError("missing required field 'cel_program'")
    program = await _validated(_program_from(raw))
    name = d.get("name")
    await put_json(req.storage, PREFIX + name, {"name": name, "validation_program": program.to_json()})
    return Response(data=_role_data(name, program))


async def patch_role(req: Request, d: FieldData) -> Response | None:
    name = d.get("name")
    old = await load_role(req.storage, name)
    if old is None:
        raise UserError("Unable to fetch cel role entry to patch")
    raw, given = d.get_ok("cel_program")
    program = await _validated(_program_from(raw, old) if given else old)
    await put_json(req.storage, PREFIX + name, {"name": name, "validation_program": program.to_json()})
    return Response(data=_role_data(name, program))


async def delete_role(req: Request, d: FieldData) -> Response | None:
    await req.storage.delete(PREFIX + d.get("name"))
    return Response()      # the built-in answers 200 with no data here, not 204


def csr_map(csr: x509.CertificateSigningRequest, pem: str) -> dict[str, Any]:
    """The CSR as the built-in shows it to programs (`parsed_csr`): Go's x509.CertificateRequest field names."""
    from engine import go_x509

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in csr.subject.get_attributes_for_oid(oid)]

    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    key_type, _ = go_x509.key_type_and_bits(csr.public_key())
    return {
        "Raw": csr.public_bytes(serialization.Encoding.DER),
        "RawTBSCertificateRequest": csr.tbs_certrequest_bytes,
        "Version": 0,
        "Signature": csr.signature,
        "PublicKeyAlgorithm": _GO_KEY_ALGORITHMS.get(key_type, "0"),
        "Subject": {
            "CommonName": go_x509.common_name(csr.subject),
            "Country": values(x509.NameOID.COUNTRY_NAME), "Organization": values(x509.NameOID.ORGANIZATION_NAME),
            "OrganizationalUnit": values(x509.NameOID.ORGANIZATIONAL_UNIT_NAME),
            "Locality": values(x509.NameOID.LOCALITY_NAME), "Province": values(x509.NameOID.STATE_OR_PROVINCE_NAME),
            "StreetAddress": values(x509.NameOID.STREET_ADDRESS), "PostalCode": values(x509.NameOID.POSTAL_CODE),
            "SerialNumber": (values(x509.NameOID.SERIAL_NUMBER) or [""])[-1],
        },
        "Extensions": {e.oid.dotted_string: e.value.public_bytes() for e in csr.extensions},
        "DNSNames": san.get_values_for_type(x509.DNSName),
        "EmailAddresses": san.get_values_for_type(x509.RFC822Name),
        "IPAddresses": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
        "URIs": san.get_values_for_type(x509.UniformResourceIdentifier),
    }


async def _decide(program: Program, data: dict[str, Any]) -> cel_template.Output:
    try:
        result = await cel_eval.evaluate(program, data)
    except CelError as exc:
        raise UserError(f"error evaluating mainProgram: {exc}") from None
    if isinstance(result, Message) and result.type_name == "ValidationOutput":
        return cel_template.decode_output(result)
    if isinstance(result, str):
        raise UserError(result)
    if isinstance(result, bool):
        raise UserError("request denied")
    raise UserError(f"unexpected mainProgram result type {_go_type(result)}")


def _go_type(value: Any) -> str:
    if isinstance(value, Message):
        return "*dynamicpb.Message"
    return {int: "int64", float: "float64", bytes: "[]uint8", list: "[]ref.Val", dict: "map[ref.Val]ref.Val",
            dt.datetime: "time.Time", dt.timedelta: "time.Duration"}.get(type(value), type(value).__name__)


def paths(ctx: "PkiContext") -> list[Path]:
    async def issue_or_sign(req: Request, d: FieldData, use_csr: bool) -> Response | None:
        program = await load_role(req.storage, d.get("role"))
        if program is None:
            raise UserError("CEL role not found")
        now = dt.datetime.now(dt.timezone.utc)
        request_data = {k: v for k, v in d.raw.items()}
        data: dict[str, Any] = {"use_csr": use_csr, "request": request_data, "now": now}
        csr = None
        if use_csr:
            csr_pem, given = d.get_ok("csr")
            parsed = None
            if given:
                try:
                    csr = x509.load_pem_x509_csr(str(csr_pem).encode())
                except ValueError:
                    raise UserError("failed to parse CSR: invalid CSR format") from None
                parsed = csr_map(csr, csr_pem)
            data["parsed_csr"] = parsed
        output = await _decide(program, data)

        template = output.template
        issuer = await resolve_issuer(ctx, req, output.issuer_ref)
        if d.get("ttl") != 0 and d.get("not_after") != "":
            raise UserError("Either ttl or not_after should be provided. Both should not be provided in the same "
                            "request.")
        store = ctx.issuers(req.storage)
        signer = await store.signing_key(issuer)
        private_key = None
        if use_csr:
            csr = parse_csr(d.get("csr"))
            public_key = csr.public_key()
        else:
            try:
                key_type, key_bits = normalize_key_params(output.key_type or "rsa", output.key_bits)
                validate_signature_bits(output.signature_bits)
            except UserError as exc:
                raise UserError(f"invalid cel response for key type, key bits, or signature bits: {exc}") from None
            private_key = await generate_private_key(key_type, key_bits)
            public_key = private_key.public_key()
        not_before, not_after = cel_template.validity(
            template, now - dt.timedelta(seconds=int(d.get("not_before_duration"))))
        is_ca = bool(template.get("BasicConstraintsValid") and template.get("IsCA"))
        profile = LeafProfile(
            subject=cel_template.subject(template), public_key=public_key, not_before=not_before,
            not_after=not_after, sans=cel_template.sans(template),
            key_usages=[] if is_ca else cel_template.key_usage_names(int(template.get("KeyUsage") or 0)),
            ext_key_usages=cel_template.ext_key_usages(template),
            verbatim_extensions=cel_template.extensions(template, key_usage_verbatim=is_ca))
        cert = await build_leaf(profile, issuer.certificate, signer,
                                leaf_hash(signer, output.signature_bits, use_csr), output.use_pss,
                                await store.aia_for(issuer))
        if not output.no_store:
            await certstore.store_certificate(req.storage, cert)
        chain = await store.chain_pems(issuer)
        body = render(cert, private_key, issuer, chain, "pem", "", d.get("remove_roots_from_chain"))
        if not use_csr and issuer.is_self_signed():
            body.pop("ca_chain", None)     # the built-in returns a chain only below an intermediate
        body.setdefault("private_key", "")
        body.setdefault("private_key_type", key_type_name(private_key) if private_key is not None else "")
        resp = Response(data=body, warnings=[w for w in output.warnings if w])
        if output.generate_lease:
            ttl = max(0, int((cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()))
            resp.secret = Secret(internal_data={"secret_type": SECRET_TYPE,
                                                "serial_number": serial_to_colon_hex(cert.serial_number)},
                                 ttl=ttl, renewable=False)
        return resp

    async def issue(req: Request, d: FieldData) -> Response | None:
        return await issue_or_sign(req, d, False)

    async def sign(req: Request, d: FieldData) -> Response | None:
        return await issue_or_sign(req, d, True)

    program_field = Field(FieldType.MAP, "The CEL program: `variables` (a list of name/expression maps, evaluated "
                                         "in order) and the final `expression`.")
    role_fields = {"name": Field(FieldType.STRING, "Name of the CEL role."), "cel_program": program_field}
    paging = {
        "after": Field(FieldType.STRING, "List only names sorting after this one (it need not exist).", query=True),
        "limit": Field(FieldType.INT, "Return at most this many names; zero or less returns all.", query=True),
    }
    common = {
        "role": Field(FieldType.STRING, "The CEL role to evaluate."),
        "not_before": Field(FieldType.STRING, "Requested NotBefore (the program decides)."),
        "not_after": Field(FieldType.STRING, "Requested NotAfter (the program decides); not with ttl."),
        "ttl": Field(FieldType.DURATION, "Requested lifetime (the program decides); not with not_after.",
                     display=label("TTL")),
        "remove_roots_from_chain": Field(FieldType.BOOL, "Leave self-signed certificates out of ca_chain.",
                                         default=False),
        "signature_bits": Field(FieldType.INT, "Requested signature hash size (the program decides).", default=0,
                                display=label(value=0)),
        "use_pss": Field(FieldType.BOOL, "Requested RSA-PSS signatures (the program decides).", default=False),
        "not_before_duration": Field(FieldType.INT64, "Backdating of NotBefore, in seconds, when the template sets "
                                                      "none.", default=30,
                                       # sic: the built-in's form pre-fills this field with its label
                                       display=label(value="Not Before Duration")),
    }
    issue_fields = {
        **common,
        "key_bits": Field(FieldType.INT, "Requested key size (the program decides).", default=0,
                          display=label(value=0)),
        "key_type": Field(FieldType.STRING, "Requested key type (the program decides).", default="",
                          allowed_values=("", "rsa", "ec", "ed25519", "mldsa"), display=label(value="")),
    }
    sign_fields = {**common, "csr": Field(FieldType.STRING, "PEM CSR to sign.", default="")}
    role = name_regex("role")
    return [
        Path("cel/roles/?$", paging, {Operation.LIST: list_roles}, synopsis="List the CEL roles.",
             display=pki("list", "cel-roles")),
        Path(f"cel/roles/{name_regex('name')}", role_fields,
             {Operation.READ: read_role, Operation.UPDATE: write_role, Operation.PATCH: patch_role,
              Operation.DELETE: delete_role},
             display=pki(suffix="cel-role"),
             synopsis="Read, write, patch or delete a CEL role.",
             description="A CEL role's program decides each cel/issue and cel/sign request: it answers a "
                         "ValidationOutput holding the certificate template, or a string or bool to refuse."),
        Path(f"cel/issue/{role}", issue_fields, {Operation.UPDATE: issue}, takes_raw_body=True,
             display=pki("issue", "with-cel-role"),
             synopsis="Issue a certificate and key as a CEL role's program decides."),
        Path(f"cel/sign/{role}", sign_fields, {Operation.UPDATE: sign}, takes_raw_body=True,
             display=pki("sign", "with-cel-role"),
             synopsis="Sign a CSR as a CEL role's program decides."),
    ]
