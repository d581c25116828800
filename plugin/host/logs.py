"""Logs as JSON lines on stderr, the format the server's plugin log reader (hclog) understands."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
           logging.CRITICAL: "error"}


class HclogJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "@level": _LEVELS.get(record.levelno, "info"),
            "@message": record.getMessage(),
            "@module": record.name,
            "@timestamp": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="microseconds"),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HclogJsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or "info").upper() if (level or "info").upper() in logging._nameToLevel else "INFO")
    # grpclib logs every broken connection at error level; that's noise in the server log.
    logging.getLogger("grpclib").setLevel(logging.CRITICAL)
    # hpack/h2 log every header block at debug: at our debug level that doubled request latency.
    for noisy in ("hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
