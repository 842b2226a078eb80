"""The binary media frame format (docs/FRAME-FORMAT.md): a fixed 28-byte header, then an opaque payload.

The server reads only the header; the payload is end-to-end encrypted client data. Frames travel as one
QUIC datagram each (audio) or back to back on a unidirectional stream per group of pictures (video).

Every way parsing can fail raises `FrameError` and nothing else, so a caller guards one exception type.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from darktower.core.errors import DarkTowerError

VERSION: Final = 1
FLAG_KEYFRAME: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_KEYFRAME
_VOICE_ACTIVITY: Final = 0x80

HEADER: Final = struct.Struct("!BBBBIIQII")
"""version, flags, layers, audio level, track id, group, capture µs, object sequence, payload length."""
HEADER_SIZE: Final = HEADER.size

MAX_U32: Final = 0xFFFF_FFFF
MAX_U64: Final = 0xFFFF_FFFF_FFFF_FFFF
SILENCE: Final = 127
"""Audio level of silence (and of video frames): 127 -dBov, as in RFC 6464."""


class FrameError(DarkTowerError, ValueError):
    """A media frame (or the bytes claimed to be one) is malformed; the message says which field and why."""


class FrameHeader(NamedTuple):
    """A parsed frame header. Field order is the wire order of `HEADER`."""

    version: int
    flags: int
    layers: int
    """Spatial layer in the high nibble, temporal layer in the low nibble."""
    audio_level: int
    """Bit 7: voice activity; bits 0-6: level in -dBov (0 loudest, 127 silence)."""
    track_id: int
    group: int
    capture_us: int
    """Capture time in microseconds since the Unix epoch, on the publisher's clock."""
    object_seq: int
    """Sequence of this frame within its group; a group's first frame is 0."""
    payload_length: int

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    @property
    def spatial_layer(self) -> int:
        return self.layers >> 4

    @property
    def temporal_layer(self) -> int:
        return self.layers & 0x0F

    @property
    def level_dbov(self) -> int:
        return self.audio_level & 0x7F

    @property
    def voice_activity(self) -> bool:
        return bool(self.audio_level & _VOICE_ACTIVITY)


def encode_frame(
    *,
    track_id: int,
    group: int,
    object_seq: int,
    capture_us: int,
    payload: bytes | memoryview,
    keyframe: bool = False,
    spatial_layer: int = 0,
    temporal_layer: int = 0,
    level_dbov: int = SILENCE,
    voice_activity: bool = False,
) -> bytes:
    """Serialises one frame. Out-of-range fields raise `FrameError` naming the field."""
    _check_range("track_id", track_id, MAX_U32)
    _check_range("group", group, MAX_U32)
    _check_range("object_seq", object_seq, MAX_U32)
    _check_range("capture_us", capture_us, MAX_U64)
    _check_range("spatial_layer", spatial_layer, 15)
    _check_range("temporal_layer", temporal_layer, 15)
    _check_range("level_dbov", level_dbov, 127)
    _check_range("payload length", len(payload), MAX_U32)
    header = HEADER.pack(
        VERSION,
        FLAG_KEYFRAME if keyframe else 0,
        (spatial_layer << 4) | temporal_layer,
        level_dbov | (_VOICE_ACTIVITY if voice_activity else 0),
        track_id,
        group,
        capture_us,
        object_seq,
        len(payload),
    )
    return header + payload


def parse_header(
    data: bytes | bytearray | memoryview, offset: int = 0, max_payload: int = MAX_U32
) -> FrameHeader:
    """Parses and validates the header at `offset`; the payload may not have arrived yet."""
    if len(data) - offset < HEADER_SIZE:
        raise FrameError(f"truncated header: {len(data) - offset} of {HEADER_SIZE} bytes")
    header = FrameHeader._make(HEADER.unpack_from(data, offset))
    if header.version != VERSION:
        raise FrameError(f"unsupported frame version {header.version} (this server speaks {VERSION})")
    if header.flags & ~_KNOWN_FLAGS:
        raise FrameError(f"reserved flag bits set: 0x{header.flags:02x}")
    if header.payload_length > max_payload:
        raise FrameError(f"payload of {header.payload_length} bytes is over the limit of {max_payload}")
    return header


def decode_frame(
    data: bytes | bytearray | memoryview, max_payload: int = MAX_U32
) -> tuple[FrameHeader, memoryview]:
    """Parses a buffer that must hold exactly one frame (a datagram). The payload is a view, not a copy."""
    header = parse_header(data, 0, max_payload)
    end = HEADER_SIZE + header.payload_length
    if len(data) != end:
        raise FrameError(f"frame is {len(data)} bytes but its header says {end}")
    return header, memoryview(data)[HEADER_SIZE:end]


class FrameReader:
    """Sans-I/O parser for frames written back to back on a stream, fed in arbitrary chunks.

    `feed` returns the complete frames (header and the whole frame's bytes, header included, so a relay
    forwards them unchanged); a malformed header raises `FrameError`, after which the reader is unusable.
    """

    __slots__ = ("_buffer", "_max_payload")

    def __init__(self, max_payload: int = MAX_U32) -> None:
        self._buffer = bytearray()
        self._max_payload = max_payload

    def feed(self, data: bytes) -> list[tuple[FrameHeader, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[FrameHeader, bytes]] = []
        offset = 0
        while len(buffer) - offset >= HEADER_SIZE:
            header = parse_header(buffer, offset, self._max_payload)
            end = offset + HEADER_SIZE + header.payload_length
            if end > len(buffer):
                break
            frames.append((header, bytes(buffer[offset:end])))
            offset = end
        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back until more data arrives."""
        return len(self._buffer)

    def close(self) -> None:
        """Declares the end of the stream; a partial frame left over raises `FrameError`."""
        if self._buffer:
            raise FrameError(f"stream ended inside a frame ({len(self._buffer)} bytes left over)")


def _check_range(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise FrameError(f"{name} {value} is outside 0..{maximum}")
