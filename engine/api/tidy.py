"""tidy (202, background), tidy-status, tidy-cancel and config/auto-tidy."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from engine import tidy as tidymod
from engine.api.openapi_hints import pki
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, is_performance_standby, raw_response,
)
from plugin.framework.fields import FieldError, parse_duration

if TYPE_CHECKING:
    from engine.context import PkiContext

log = logging.getLogger("python-pki.tidy")

NOTHING_SELECTED = ("Manual tidy requested but no tidy operations were set. Enable at least one tidy operation to be "
                    "run (tidy_cert_store / tidy_revoked_certs / tidy_invalid_certs / "
                    "tidy_revoked_cert_issuer_associations / tidy_expired_issuers / tidy_move_legacy_ca_bundle / "
                    "tidy_acme).")
STARTED = ("Tidy operation successfully started. Any information from the operation will be printed to the "
           "server's logs.")
ALREADY = "Tidy operation already in progress."
INTERRUPTED = "the tidy run stopped before it finished: the node running it stopped or lost leadership"

B, D = FieldType.BOOL, FieldType.DURATION
TIDY_FIELDS: dict[str, Field] = {
    "tidy_cert_store": Field(B, "Set to true to enable tidying up the certificate store"),
    "tidy_revoked_certs": Field(B, "Set to true to expire all revoked and expired certificates, removing them "
                                   "both from the CRL and from storage."),
    "tidy_revocation_list": Field(B, "Deprecated; synonym for 'tidy_revoked_certs'."),
    "tidy_invalid_certs": Field(B, "Set to true to remove unparseable entries from the certificate store."),
    "tidy_revoked_cert_issuer_associations": Field(B, "Set to true to validate issuer associations on revocation "
                                                      "entries."),
    "tidy_expired_issuers": Field(B, "Set to true to automatically remove expired issuers past the "
                                     "issuer_safety_buffer."),
    "tidy_move_legacy_ca_bundle": Field(B, "Set to true to move the legacy ca_bundle to a backup location."),
    "tidy_acme": Field(B, "Set to true to tidy ACME orders, accounts and unused EAB keys.", default=False),
    "safety_buffer": Field(D, "The amount of extra time that must have passed beyond certificate expiration "
                              "before it is removed.", default=259200),
    "revoked_safety_buffer": Field(D, "As safety_buffer, for revoked certificates; defaults to safety_buffer."),
    "issuer_safety_buffer": Field(D, "The amount of extra time that must have passed beyond issuer expiration "
                                     "before it is removed.", default=31536000),
    "acme_account_safety_buffer": Field(D, "Time after which an unused ACME account is removed.",
                                        default=2592000),
    "pause_duration": Field(FieldType.STRING, "The amount of time to wait between processing certificates.",
                            default="0s"),
    "page_size": Field(FieldType.INT, "Number of keys handled per storage page.", default=1000),
}
AUTO_FIELDS: dict[str, Field] = {
    **TIDY_FIELDS,
    "enabled": Field(B, "Set to true to enable automatic tidy operations."),
    "interval_duration": Field(D, "Interval at which to run an auto-tidy operation.", default=43200),
    "maintain_stored_certificate_counts": Field(B, "Keep certificate counts (accepted, not maintained).",
                                                default=False),
    "publish_stored_certificate_count_metrics": Field(B, "Publish certificate count metrics (accepted, not "
                                                         "published).", default=False),
}


def accepted(warning: str) -> Response:
    """The built-in answers tidy with 202 and a JSON body; the server sends a raw body with our status."""
    body = {"request_id": "", "lease_id": "", "renewable": False, "lease_duration": 0, "data": None,
            "wrap_info": None, "warnings": [warning], "auth": None}
    return raw_response(json.dumps(body).encode(), "application/json", 202)


def apply_fields(target: Any, d: FieldData, only_supplied: bool) -> None:
    for name in TIDY_FIELDS:
        if name in ("tidy_revocation_list", "revoked_safety_buffer"):
            continue
        value, supplied = d.get_ok(name)
        if supplied or not only_supplied:
            setattr(target, name, value)
    revocation_list, supplied = d.get_ok("tidy_revocation_list")
    if supplied and revocation_list:
        target.tidy_revoked_certs = True
    rsb, supplied = d.get_ok("revoked_safety_buffer")
    if supplied:
        target.revoked_safety_buffer = rsb
    elif not only_supplied or d.has("safety_buffer"):
        target.revoked_safety_buffer = target.safety_buffer


def validate(params: tidymod.TidyParams) -> None:
    if params.safety_buffer < 1:
        raise UserError("safety_buffer must be greater than zero")
    if params.revoked_safety_buffer < 1:
        raise UserError("revoked_safety_buffer must be greater than zero")
    if params.issuer_safety_buffer < 1:
        raise UserError("issuer_safety_buffer must be greater than zero")
    try:
        parse_duration(params.pause_duration)
    except FieldError as exc:
        raise UserError(f"Error parsing pause_duration: {exc}") from None
    if 0 < params.page_size < 5:
        raise UserError("page_size must be at least 5, or negative to disable paging")


def paths(ctx: "PkiContext") -> list[Path]:
    async def tidy(req: Request, d: FieldData) -> Response | None:
        params = tidymod.TidyParams()
        apply_fields(params, d, only_supplied=False)
        validate(params)
        if not params.any_selected():
            return accepted(NOTHING_SELECTED)
        tr = tidymod.runner(ctx)
        if tr.running():
            return accepted(ALREADY)
        tr.start(req.storage, ctx, params)
        return accepted(STARTED)

    async def status(req: Request, d: FieldData) -> Response | None:
        tr = tidymod.runner(ctx)
        standby = await is_performance_standby(req.system)
        if tr.task is not None and not standby:
            st, last_auto = tr.status, tr.last_auto_finished
        else:
            # A standby never tidies: the active stores its run. An active without a run of its own shows the
            # last one stored (a previous process, or the node that was active before a failover).
            st, last_auto = await tr.stored_status(req.storage)
            if not standby and st.state in ("Running", "Cancelling"):
                st.state, st.error = "Error", INTERRUPTED
        return Response(data=st.response(await tr.uuid_for(req.storage), last_auto))

    async def cancel(req: Request, d: FieldData) -> Response | None:
        tr = tidymod.runner(ctx)
        if not tr.running():
            return Response(warnings=["Tidy operation cannot be cancelled as none is currently running."])
        tr.cancel_requested = True
        tr.status.state = "Cancelling"
        await tr.save_status(req.storage)
        return Response(data=tr.status.response(await tr.uuid_for(req.storage), tr.last_auto_finished))

    async def read_auto(req: Request, d: FieldData) -> Response | None:
        return Response(data=asdict(await tidymod.load_auto_tidy(req.storage)))

    async def write_auto(req: Request, d: FieldData) -> Response | None:
        cfg = await tidymod.load_auto_tidy(req.storage)
        apply_fields(cfg, d, only_supplied=True)
        for name in ("enabled", "interval_duration", "maintain_stored_certificate_counts",
                     "publish_stored_certificate_count_metrics"):
            value, supplied = d.get_ok(name)
            if supplied:
                setattr(cfg, name, value)
        validate(cfg)
        if cfg.publish_stored_certificate_count_metrics and not cfg.maintain_stored_certificate_counts:
            raise UserError("Can not publish a stored certificate count metric without first maintaining the count")
        await tidymod.put_json(req.storage, tidymod.AUTO_TIDY_KEY, asdict(cfg))
        return Response(data=asdict(cfg))

    async def periodic(req: Request) -> None:
        try:
            await tidymod.periodic(req.storage, ctx)
        except Exception:  # noqa: BLE001 - one failed schedule check must not stop the other periodic work
            log.exception("auto-tidy check failed")

    ctx.periodic_hooks.append(periodic)
    return [
        Path("tidy", TIDY_FIELDS, {Operation.UPDATE: tidy}, display=pki("tidy"),
             responses={Operation.UPDATE: {202: "Accepted"}}, forward_performance_standby=True, synopsis="Tidy up the backend by removing expired "
             "certificates, revocation information, or both."),
        Path("tidy-status", {}, {Operation.READ: status}, display=pki("tidy", "status"), synopsis="Returns the status of the tidy operation."),
        Path("tidy-cancel", {}, {Operation.UPDATE: cancel}, display=pki("tidy", "cancel"), forward_performance_standby=True, synopsis="Cancels a running tidy operation."),
        Path("config/auto-tidy", AUTO_FIELDS, {Operation.READ: read_auto, Operation.UPDATE: write_auto},
             operation_display={Operation.READ: pki("read", "auto-tidy-configuration"),
                                Operation.UPDATE: pki("configure", "auto-tidy")},
             synopsis="Modifies the current configuration for automatic tidy execution."),
    ]
