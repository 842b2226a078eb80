"""Structured JSON logs, one object per line, carrying meeting and participant ids when there are any.

Log with ids through `extra`: `log.info("joined", extra={"meeting_id": m, "participant_id": p})`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

CONTEXT_KEYS: Final = ("meeting_id", "participant_id", "worker", "track_id", "event", "code", "peer")


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self._process = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self._process,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {process_name} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        context = " ".join(
            f"{key}={record.__dict__[key]}" for key in CONTEXT_KEYS if record.__dict__.get(key) is not None
        )
        return f"{base} [{context}]" if context else base


def setup(level: str, fmt: str, process_name: str) -> None:
    """Configures the root logger of this process; each child process calls it again after spawning."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process_name) if fmt == "json" else TextFormatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("quic", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
