"""Key management: `keys/` (L), `key/:ref` (R/U/D), `keys/generate/:type`, `keys/import`.

Private key material is returned once, by `keys/generate/exported`; no path ever reads it back.
"""
from __future__ import annotations

from typing import Any

from engine import ca_ops, input_limits, workers
from engine.context import PkiContext
from engine.hsm.service import managed_key_fields
from engine.keys import KeyRecord
from engine.signing import generate_private_key, normalize_key_params
from engine.x509util import colon_hex, key_type_name, pem_blocks, private_key_to_pem, subject_key_id, strip_pem
from engine.api.openapi_hints import label, pki
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response, name_regex,
    paginate,
)
from plugin.framework.fields import NAME_RE

S, I = FieldType.STRING, FieldType.INT


def paths(ctx: PkiContext) -> list[Path]:

    async def list_keys(req: Request, d: FieldData) -> Response | None:
        keys = ctx.keys(req.storage)
        ids = paginate(await keys.list(), d.get("after") or "", d.get("limit") or 0)
        default = await keys.default_id()
        info: dict[str, Any] = {}
        for key_id in ids:
            rec = await keys.get(key_id)
            if rec is not None:
                info[key_id] = {"key_name": rec.name, "is_default": key_id == default}
        if not info:
            return None
        return list_response(list(info), info)

    async def read_key(req: Request, d: FieldData) -> Response:
        rec = await ctx.keys(req.storage).resolve(req.match["key_ref"])
        data: dict[str, Any] = {"key_id": rec.id, "key_name": rec.name, "key_type": _reported_type(rec)}
        # As Vault: only managed keys carry managed_key_id/managed_key_name (Terraform's key resource reads both).
        data.update(managed_key_fields(rec))
        data["subject_key_id"] = colon_hex(subject_key_id(rec.public_key()))
        return Response(data=data)

    async def update_key(req: Request, d: FieldData) -> Response:
        keys = ctx.keys(req.storage)
        rec = await keys.resolve(req.match["key_ref"])
        new_name = (d.get("key_name") or "").strip()
        if new_name and not NAME_RE.match(new_name):
            raise UserError("new key name outside of valid character limits")
        if new_name.lower() == "default":
            raise UserError("reserved keyword 'default' can not be used as key name")
        if new_name and await keys.name_taken(new_name, except_id=rec.id):
            raise UserError("key name already in use")
        if new_name != rec.name:
            fresh = KeyRecord.from_json(rec.to_json())
            fresh.name = new_name
            await keys.put(fresh)
            rec = fresh
        resp = Response(data={"key_id": rec.id, "key_name": rec.name, "key_type": _reported_type(rec)})
        if not new_name:
            resp.add_warning("Name successfully deleted, you will now need to reference this key by it's Id: "
                             + rec.id)
        return resp

    async def delete_key(req: Request, d: FieldData) -> Response | None:
        keys = ctx.keys(req.storage)
        ref = req.match["key_ref"]
        rec = await keys.find(ref)
        if rec is None:
            return None
        for issuer in await ctx.issuers(req.storage).all():
            if issuer.key_id == rec.id:
                raise UserError(f"Failed to Delete Key.  Key in Use by Issuer: {issuer.id}")
        was_default = await keys.default_id() == rec.id
        if was_default:
            await keys.set_default("")
        await keys.delete(rec.id)
        ctx.signers.pop(rec.id, None)
        if was_default:
            return Response(warnings=[
                f"Deleted key {rec.id} (via key_ref {ref}); this was configured as the default key. Operations "
                "without an explicit key will not work until a new default is configured."])
        return None

    async def generate_key(req: Request, d: FieldData) -> Response:
        kind = req.path.rsplit("/", 1)[1]
        keys = ctx.keys(req.storage)
        name = await ca_ops.requested_key_name(d, keys)
        ext_ref = d.get("external_key_ref") or ""
        if kind in ("internal", "exported"):
            if ext_ref:
                raise UserError('cannot specify "external_key_ref" on non-kms typed key generation request')
            for arg in ("managed_key_name", "managed_key_id"):
                if (d.get(arg) or "").strip():
                    raise UserError(f'cannot specify "{arg}" on non-kms typed key generation request; use '
                                    "keys/generate/kms")
            try:
                key_type, key_bits = normalize_key_params(d.get("key_type"), d.get("key_bits"))
            except UserError as exc:
                raise UserError(f"Validation for key_type, key_bits failed: {exc.message}") from None
            private_key = await generate_private_key(key_type, key_bits)
            rec, _ = await ca_ops.import_key(ctx, req.storage, KeyRecord.from_private_key(private_key, name=name))
            data: dict[str, Any] = {"key_id": rec.id, "key_name": rec.name, "key_type": rec.key_type}
            if kind == "exported":
                data["private_key"] = strip_pem(private_key_to_pem(private_key))
            return Response(data=data)
        if kind == "kms":
            if not ext_ref and not d.get("managed_key_name") and not d.get("managed_key_id"):
                raise UserError('"external_key_ref" is required for kms typed key generation')
            if ctx.kms_provider is None:
                raise UserError("kms-typed key generation is not available: no external key provider is "
                                "configured for this plugin")
            record, is_new = await ctx.kms_provider(req, d)
            if is_new:
                if name and not record.name:
                    record.name = name
                record, _ = await ca_ops.import_key(ctx, req.storage, record)
            data = {"key_id": record.id, "key_name": record.name, "key_type": record.key_type}
            if ext_ref:
                data["external_key_ref"] = ext_ref
            return Response(data=data)
        raise UserError("Unknown type of key to generate")

    async def import_key(req: Request, d: FieldData) -> Response:
        keys = ctx.keys(req.storage)
        name = await ca_ops.requested_key_name(d, keys)
        bundle = d.get("pem_bundle") or ""
        if len(bundle) < 64:
            raise UserError("provided data for import was too short; perhaps a path was passed to the API rather "
                            "than the contents of a PEM file")
        blocks = pem_blocks(bundle)
        if not blocks:
            raise UserError("error when parsing block 1: invalid PEM data")
        if len(blocks) != 1:
            raise UserError("only a single key can be present within the pem_bundle for importing")
        input_limits.check_text_size(bundle, "the PEM bundle", input_limits.MAX_PEM_BUNDLE_BYTES)
        private_key = (await workers.load_private_keys([blocks[0][1]]))[0]
        if private_key is None:
            raise UserError("failed to parse private key: unsupported or malformed key")
        if key_type_name(private_key) == "unknown":
            raise UserError("unsupported private key type")
        rec, existed = await ca_ops.import_key(ctx, req.storage, KeyRecord.from_private_key(private_key, name=name))
        resp = Response(data={"key_id": rec.id, "key_name": rec.name, "key_type": rec.key_type})
        if existed:
            resp.add_warning("Key already imported, use key/ endpoint to update name.")
        return resp

    list_fields = {"after": Field(S, "List entries after this one.", query=True),
                   "limit": Field(I, "Maximum number of entries.", query=True)}
    key_fields = {"key_ref": Field(S, "Reference to a key: id, name or 'default'.", default="default"),
                  "key_name": Field(S, "New name of the key (empty removes the name).")}
    gen_fields = {
        "key_name": Field(S, "Name of the new key."),
        "key_type": Field(S, 'Key type: "rsa", "ec", "ed25519" or "mldsa".', default="rsa",
                          allowed_values=("rsa", "ec", "ed25519", "mldsa"), display=label(value="rsa")),
        "key_bits": Field(I, "Key size (0 = default for the type).", default=0),
        "external_key_ref": Field(S, "External key reference (kms type)."),
        "managed_key_name": Field(S, "Managed key name (kms type)."),
        "managed_key_id": Field(S, "Managed key id (kms type)."),
    }
    import_fields = {"pem_bundle": Field(S, "PEM of exactly one private key."),
                     "key_name": Field(S, "Name of the imported key.")}
    return [
        Path("keys/?$", list_fields, {Operation.LIST: list_keys}, synopsis="List keys.", display=pki("list", "keys")),
        Path("key/" + name_regex("key_ref"), key_fields,
             {Operation.READ: read_key, Operation.UPDATE: ctx.serialized(update_key),
              Operation.DELETE: ctx.serialized(delete_key)},
             display=pki(suffix="key"), responses={Operation.UPDATE: {204: "OK"}},
             synopsis="Read, rename or delete a key."),
        Path("keys/generate/(internal|exported|kms)", gen_fields, {Operation.UPDATE: ctx.serialized(generate_key)},
             display=pki("generate", "internal-key|exported-key|kms-key"),
             forward_performance_standby=True,
             synopsis="Generate a key (exported returns the private key, once)."),
        Path("keys/import", import_fields, {Operation.UPDATE: ctx.serialized(import_key)}, forward_performance_standby=True, synopsis="Import a private key.",
             display=pki("import", "key")),
    ]


def _reported_type(rec: KeyRecord) -> str:
    return rec.key_type
