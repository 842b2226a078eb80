"""Which worker owns a meeting: a stable hash of its id modulo the number of workers.

Every process (workers, control plane, tools) must agree on the owner without asking anyone, and the answer
must not change across restarts or Python versions, so the hash is BLAKE2b (never Python's salted `hash`).
"""

from __future__ import annotations

import hashlib


def owner_index(meeting_id: str, workers: int) -> int:
    """The index (0 <= index < workers) of the worker that owns `meeting_id`."""
    if workers < 1:
        msg = f"workers must be at least 1, not {workers}"
        raise ValueError(msg)
    digest = hashlib.blake2b(meeting_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers
