"""CEL programs of CEL roles, compiled and evaluated with cel-python (celpy) in a child process with limits.

A program is OpenBao's: ordered `variables` (each a name and an expression, visible to later ones) and a final
`expression`, in the container `openbao.pki`, where `ValidationOutput{...}`, `CertTemplate{...}`, `PKIX.Name{...}`
and the other messages of the built-in's cert_template.proto can be constructed. A hostile program (a comprehension
nested a few levels deep is enough) can run for minutes or fill memory, so evaluation happens in a forked child
with a wall-clock limit and an address-space limit, killed when it overruns; the event loop only waits.

The child returns plain Python values: messages as `Message(type_name, fields)`, timestamps as aware datetimes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import re
from email.utils import parseaddr
from typing import Any

EVAL_SECONDS = float(os.environ.get("PYTHON_PKI_CEL_TIMEOUT", "5"))
EVAL_MEMORY_BYTES = int(os.environ.get("PYTHON_PKI_CEL_MEMORY", str(1 << 30)))
MAX_PROGRAM_BYTES = 64 * 1024
CONTAINER = "openbao.pki"

# The messages of the built-in's cert_template.proto (package openbao.pki) and their fields.
MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "ValidationOutput": ("template", "issuer_ref", "use_pss", "signature_bits", "generate_lease", "no_store",
                         "warnings", "subject_key_id", "key_type", "key_bits"),
    "CertTemplate": (
        "Version", "Subject", "NotBefore", "NotAfter", "KeyUsage", "ExtraExtensions", "ExtKeyUsage",
        "UnknownExtKeyUsage", "BasicConstraintsValid", "IsCA", "MaxPathLen", "MaxPathLenZero", "SubjectKeyId",
        "DNSNames", "EmailAddresses", "IPAddresses", "URIs", "PermittedDNSDomainsCritical", "PermittedDNSDomains",
        "ExcludedDNSDomains", "PermittedIPRanges", "ExcludedIPRanges", "PermittedEmailAddresses",
        "ExcludedEmailAddresses", "PermittedURIDomains", "ExcludedURIDomains", "PolicyIdentifiers", "Policies",
        "InhibitAnyPolicy", "InhibitAnyPolicyZero", "InhibitPolicyMapping", "InhibitPolicyMappingZero",
        "RequireExplicitPolicy", "RequireExplicitPolicyZero", "PolicyMappings"),
    "PKIX.Name": ("Country", "Organization", "OrganizationUnit", "Locality", "Province", "StreetAddress",
                  "PostalCode", "SerialNumber", "CommonName"),
    "PKIX.Extension": ("Id", "Critical", "Value"),
    "ObjectIdentifier": ("arc",),
    "OID": ("arc",),
    "net.IP": ("IP",),
    "net.IPMask": ("IPMask",),
    "net.IPNet": ("IP", "Mask"),
    "Userinfo": ("username", "password", "password_set"),
    "url.URL": ("Scheme", "Opaque", "User", "Host", "Path", "RawPath", "OmitHost", "ForceQuery", "RawQuery",
                "Fragment", "RawFragment"),
    "PolicyMapping": ("IssuerDomainPolicy", "SubjectDomainPolicy"),
}
ENUMS: dict[str, tuple[str, ...]] = {
    "KeyUsage": ("KeyUsageUnspecified", "KeyUsageDigitalSignature", "KeyUsageContentCommitment",
                 "KeyUsageKeyEncipherment", "KeyUsageDataEncipherment", "KeyUsageKeyAgreement", "KeyUsageCertSign",
                 "KeyUsageCRLSign", "KeyUsageEncipherOnly", "KeyUsageDecipherOnly"),
    "ExtKeyUsage": ("ExtKeyUsageAny", "ExtKeyUsageServerAuth", "ExtKeyUsageClientAuth", "ExtKeyUsageCodeSigning",
                    "ExtKeyUsageEmailProtection", "ExtKeyUsageIPSECEndSystem", "ExtKeyUsageIPSECTunnel",
                    "ExtKeyUsageIPSECUser", "ExtKeyUsageTimeStamping", "ExtKeyUsageOCSPSigning",
                    "ExtKeyUsageMicrosoftServerGatedCrypto", "ExtKeyUsageNetscapeServerGatedCrypto",
                    "ExtKeyUsageMicrosoftCommercialCodeSigning", "ExtKeyUsageMicrosoftKernelCodeSigning"),
}


class CelError(Exception):
    """A program that does not compile or fails while evaluating; the message is the built-in's chain."""


@dataclasses.dataclass
class Message:
    type_name: str                 # e.g. "CertTemplate", "PKIX.Name"
    fields: dict[str, Any]


@dataclasses.dataclass
class Variable:
    name: str
    expression: str


@dataclasses.dataclass
class Program:
    expression: str
    variables: list[Variable] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.variables:
            out["variables"] = [{"name": v.name, "expression": v.expression} for v in self.variables]
        out["expression"] = self.expression
        return out

    @classmethod
    def from_json(cls, raw: Any) -> "Program":
        """A stored or submitted program; ValueError with the built-in's wording when it is malformed."""
        if not isinstance(raw, dict):
            raise ValueError("failed to decode 'cel_program': expected a map")
        variables = []
        for i, item in enumerate(raw.get("variables") or []):
            if not isinstance(item, dict) or not isinstance(item.get("name", ""), str) \
                    or not isinstance(item.get("expression", ""), str):
                raise ValueError(f"failed to decode 'cel_program': variables[{i}] must be a map of name and "
                                 "expression strings")
            variables.append(Variable(item.get("name", ""), item.get("expression", "")))
        expression = raw.get("expression", "")
        if not isinstance(expression, str):
            raise ValueError("failed to decode 'cel_program': expression must be a string")
        program = cls(expression, variables)
        if sum(len(v.expression) + len(v.name) for v in variables) + len(expression) > MAX_PROGRAM_BYTES:
            raise ValueError(f"cel_program is larger than {MAX_PROGRAM_BYTES} bytes")
        return program


# ---------------------------------------------------------------------------------------------------------------
# In the child: celpy

def _environment(activation_names: list[str]) -> Any:
    import celpy
    from celpy import celtypes

    annotations: dict[str, Any] = {}
    for name, fields in MESSAGE_FIELDS.items():
        annotations[f"{CONTAINER}.{name}"] = _message_class(celtypes, name, fields)
    for name in activation_names:
        annotations[name] = celtypes.MapType if name in ("request", "parsed_csr", "entity_info") else None
    return celpy.Environment(package=CONTAINER, annotations={k: v for k, v in annotations.items() if v})


def _message_class(celtypes: Any, name: str, fields: tuple[str, ...]) -> type:
    allowed = frozenset(fields)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        celtypes.MessageType.__init__(self, *args, **kwargs)
        for key in self:
            if str(key) not in allowed:
                raise TypeError(f"no such field '{key}' in message {CONTAINER}.{name}")

    return type(name.replace(".", "_"), (celtypes.MessageType,), {"__init__": init, "cel_type_name": name})


def _functions() -> dict[str, Any]:
    """check_valid_email, encode_json/decode_json and the string extensions programs use most."""
    import celpy
    from celpy import celtypes

    def check_valid_email(value: Any) -> Any:
        if not isinstance(value, str):
            return celtypes.BoolType(False)
        name, addr = parseaddr(str(value))
        return celtypes.BoolType(bool(addr) and re.fullmatch(r"[^@\s]+@[^@\s]+", addr) is not None)

    def encode_json(value: Any) -> Any:
        try:
            return celtypes.StringType(json.dumps(_plain(value), default=str, separators=(",", ":")))
        except (TypeError, ValueError):
            return celtypes.BoolType(False)

    def decode_json(value: Any) -> Any:
        try:
            return celpy.json_to_cel(json.loads(str(value)))
        except ValueError:
            return celtypes.BoolType(False)

    def split(text: Any, sep: Any, limit: Any = None) -> Any:
        parts = str(text).split(str(sep)) if limit is None or int(limit) < 0 else \
            str(text).split(str(sep), max(int(limit) - 1, 0))
        return celtypes.ListType([celtypes.StringType(p) for p in parts])

    def join(items: Any, sep: Any = "") -> Any:
        return celtypes.StringType(str(sep).join(str(i) for i in items))

    return {
        "check_valid_email": check_valid_email, "encode_json": encode_json, "decode_json": decode_json,
        "split": split, "join": join,
        "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
        "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
        "trim": lambda s: celtypes.StringType(str(s).strip()),
        "replace": lambda s, old, new: celtypes.StringType(str(s).replace(str(old), str(new))),
        "indexOf": lambda s, sub: celtypes.IntType(str(s).find(str(sub))),
    }


def _plain(value: Any) -> Any:
    from celpy import celtypes

    if isinstance(value, celtypes.MessageType):
        return Message(getattr(type(value), "cel_type_name", "google.protobuf.Struct"),
                       {str(k): _plain(v) for k, v in value.items()})
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.BytesType):
        return bytes(value)
    if isinstance(value, celtypes.TimestampType):
        return dt.datetime.fromtimestamp(value.timestamp(), dt.timezone.utc)
    if isinstance(value, celtypes.DurationType):
        return dt.timedelta(seconds=value.total_seconds())
    if isinstance(value, celtypes.MapType):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (celtypes.ListType, list, tuple)):
        return [_plain(v) for v in value]
    return value


def _to_cel(value: Any) -> Any:
    """JSON-like request data (plus bytes, for CSR fields) as CEL values."""
    from celpy import celtypes

    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, bytes):
        return celtypes.BytesType(value)
    if isinstance(value, dt.datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(str(k)): _to_cel(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return celtypes.ListType([_to_cel(v) for v in value])
    return None


def _activation(data: dict[str, Any]) -> dict[str, Any]:
    from celpy import celtypes

    out: dict[str, Any] = {key: _to_cel(value) for key, value in data.items()}
    for enum, names in ENUMS.items():
        for number, name in enumerate(names):
            out[f"{enum}.{name}"] = celtypes.IntType(number)
    return out


def _compile(env: Any, expression: str) -> Any:
    import celpy

    try:
        return env.compile(expression)
    except celpy.CELParseError as exc:
        raise CelError(f"ERROR: <input>: Syntax error: {str(exc).strip()}") from None


def _validate_in_child(program: Program) -> None:
    env = _environment(["request", "now", "use_csr", "parsed_csr", "client_token", "entity_id", "entity_groups",
                        "entity_info"])
    for i, var in enumerate(program.variables):
        try:
            _compile(env, var.expression)
        except CelError as exc:
            raise CelError(f"failed to validate variables: variable[{i}].{var.name}: failed to validate: invalid "
                           f"CEL syntax for variable '{var.name}': {exc}") from None
    try:
        _compile(env, program.expression)
    except CelError as exc:
        raise CelError(f"invalid CEL syntax for main expression: {exc}") from None


def _evaluate_in_child(program: Program, data: dict[str, Any]) -> Any:
    import celpy

    env = _environment(list(data))
    activation = _activation(data)
    functions = _functions()

    def run(expression: str) -> Any:
        ast = _compile(env, expression)
        try:
            result = env.program(ast, functions=functions).evaluate(activation)
        except (celpy.CELEvalError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
            raise CelError(f'failed to evaluate expression "{expression}": {_eval_reason(exc)}') from None
        if isinstance(result, celpy.CELEvalError):
            raise CelError(f'failed to evaluate expression "{expression}": {_eval_reason(result)}')
        return result

    for i, var in enumerate(program.variables):
        try:
            activation[var.name] = run(var.expression)
        except CelError as exc:
            raise CelError(f"failed to evaluate variables: variable[{i}].{var.name}: {exc}") from None
    try:
        return _plain(run(program.expression))
    except CelError as exc:
        raise CelError(f"failed to evaluate expression: {exc}") from None


def _eval_reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    text = str(args[0]) if args else str(exc)
    match = re.match(r"no such member in mapping: '?([^']*)'?", text)
    if match or "KeyError" in text:
        key = match.group(1) if match else text
        return f"no such key: {key}"
    return text.splitlines()[0] if text else type(exc).__name__


def _child(conn: Any, kind: str, program: Program, data: dict[str, Any]) -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (EVAL_MEMORY_BYTES, EVAL_MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    try:
        if kind == "validate":
            _validate_in_child(program)
            conn.send(("ok", None))
        else:
            conn.send(("ok", _evaluate_in_child(program, data)))
    except CelError as exc:
        conn.send(("error", str(exc)))
    except MemoryError:
        conn.send(("error", "CEL program exceeded its memory limit"))
    except RecursionError:
        conn.send(("error", "CEL program nested too deeply"))
    except Exception as exc:  # noqa: BLE001 - anything celpy raises is the program's failure, reported as such
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# In the plugin: run the child and wait for it off the event loop

def _context() -> Any:
    from engine import workers

    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods and os.environ.get("PYTHON_PKI_WORKERS") != "threads":
        workers.executor()     # starts the fork server with our stdio detached, as the worker pool needs too
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def _run_bounded(kind: str, program: Program, data: dict[str, Any]) -> Any:
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, kind, program, data), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(EVAL_SECONDS):
            raise CelError(f"CEL program did not finish within {EVAL_SECONDS:g}s and was stopped")
        try:
            status, value = parent.recv()
        except EOFError:
            raise CelError("CEL program exceeded its memory limit or crashed its evaluator") from None
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join(2)
    if status == "error":
        raise CelError(value)
    return value


async def validate(program: Program) -> None:
    await asyncio.to_thread(_run_bounded, "validate", program, {})


async def evaluate(program: Program, data: dict[str, Any]) -> Any:
    return await asyncio.to_thread(_run_bounded, "evaluate", program, data)
