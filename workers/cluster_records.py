"""What workers of one server tell each other, and the cluster-wide session ids they name sessions by.

Two record families travel through each worker's shared-memory rings (`darktower.workers.ring`):

- Control records (msgspec MessagePack, one tagged struct per record, in the writer's control ring): each
  names the worker it is for (`to`, or `BROADCAST`); every other worker reads the ring and skips records
  that are not its own. They are internal, versioned with the code (all workers run the same build), and
  never leave the machine, so they are not part of the public protobuf.
- Media records (a fixed little-endian header, then the frame as the publisher sent it, in the writer's
  media ring): one per frame a local publisher sent that some other worker's participant subscribes to.

A cluster session id is unique across the server's workers and their restarts: worker index (8 bits), the
worker process's random incarnation (24 bits), its local session number (32 bits).
"""

from __future__ import annotations

import struct
from typing import Final

import msgspec

from darktower.workers.actions import Action

BROADCAST: Final = -1
"""`to` of a record meant for every other worker."""

_LOCAL_BITS: Final = 32
_INCARNATION_BITS: Final = 24
INCARNATION_LIMIT: Final = 1 << _INCARNATION_BITS
MAX_WORKERS: Final = 64
"""A ring has at most 64 reader slots, one per reading worker."""


def cluster_session(worker: int, incarnation: int, local: int) -> int:
    return (worker << (_INCARNATION_BITS + _LOCAL_BITS)) | (incarnation << _LOCAL_BITS) | local


def worker_of(session: int) -> int:
    return session >> (_INCARNATION_BITS + _LOCAL_BITS)


def incarnation_of(session: int) -> int:
    return (session >> _LOCAL_BITS) & (INCARNATION_LIMIT - 1)


def local_of(session: int) -> int:
    return session & ((1 << _LOCAL_BITS) - 1)


# --- control records ---------------------------------------------------------------------------------


class _Record(msgspec.Struct, tag=True, array_like=True, frozen=True):
    to: int


class Hello(_Record, frozen=True):
    """A worker (re)started with this incarnation: every session of its earlier incarnations is gone."""

    incarnation: int


class Signal(_Record, frozen=True):
    """Edge -> owner: signaling bytes a participant sent, cut anywhere."""

    session: int
    meeting_id: str
    data: bytes


class Lagging(_Record, frozen=True):
    """Edge -> owner: the subscriber's current group of the video track was dropped; it wants a keyframe."""

    session: int
    meeting_id: str
    track_id: int


class Closed(_Record, frozen=True):
    """Edge -> owner: the participant's transport is gone."""

    session: int
    meeting_id: str


class Deliver(_Record, frozen=True):
    """Owner -> edge: write these signaling bytes (whole `ServerMessage`s) on the session's stream."""

    session: int
    data: bytes


class Close(_Record, frozen=True):
    """Owner -> edge: close the session (after flushing) with this code and reason."""

    session: int
    code: int
    reason: str


class MemberEntry(msgspec.Struct, array_like=True, frozen=True):
    session: int
    participant: bytes
    """The member's `Participant` protobuf, as the meeting shows it to others."""


class TrackEntry(msgspec.Struct, array_like=True, frozen=True):
    track_id: int
    publisher: int
    """The publisher's cluster session id."""
    kind: int
    codec: str
    label: str
    subscribers: tuple[int, ...]
    """Cluster session ids, in subscription order."""


class Catalog(_Record, frozen=True):
    """Owner -> every worker hosting the meeting's participants: the meeting as media routing needs it, and
    as a restarted owner needs it back. An empty catalog means the worker hosts none of them any more."""

    meeting_id: str
    next_track_id: int
    members: tuple[MemberEntry, ...]
    tracks: tuple[TrackEntry, ...]


class Rejoin(_Record, frozen=True):
    """Edge -> restarted owner: the meeting as the edge last saw it, less the participants of the dead owner,
    so the owner rebuilds it (track ids kept) without anyone noticing. Every edge sends its view; the first
    rebuilds everything (so no subscription is missing from a catalog meanwhile), later ones add what is
    missing. `local` are the sender's sessions still open: a member of the sender that is not among them
    left while the owner was down."""

    meeting_id: str
    next_track_id: int
    members: tuple[MemberEntry, ...]
    tracks: tuple[TrackEntry, ...]
    local: tuple[int, ...]


ControlRecord = Hello | Signal | Lagging | Closed | Deliver | Close | Catalog | Rejoin

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(ControlRecord)


class RecordError(ValueError):
    """A ring record that is not a well-formed record of this build (counted and skipped by readers)."""


def encode_control(record: ControlRecord) -> bytes:
    return _encoder.encode(record)


def decode_control(data: bytes | memoryview) -> ControlRecord:
    try:
        record: ControlRecord = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 in a str through
        raise RecordError(f"undecodable control record: {exc}") from None
    return record


# --- media records -----------------------------------------------------------------------------------

MEDIA_HEADER: Final = struct.Struct("<QQIIB")
"""publisher session, publisher's stream id (0 for audio), track id, group, flags."""
MEDIA_HEADER_SIZE: Final = MEDIA_HEADER.size
MEDIA_AUDIO: Final = 0x01
"""An audio frame (a datagram)."""
MEDIA_STARTS_GROUP: Final = 0x02
"""A video group's keyframe, the first frame of the publisher's stream."""
MEDIA_END_GROUP: Final = 0x04
"""The publisher's stream (group) ended; no frame follows the header."""


# --- what the cluster core asks its adapter to do, besides the single-worker actions ---------------------


class WriteControl(msgspec.Struct, frozen=True):
    """Append this encoded control record to the worker's control ring."""

    data: bytes


class WriteMedia(msgspec.Struct, frozen=True):
    """Append a media record (`header` then `frame`) to the worker's media ring."""

    header: bytes
    frame: bytes


ClusterAction = Action | WriteControl | WriteMedia
