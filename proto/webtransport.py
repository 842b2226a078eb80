"""WebTransport-over-HTTP/3 wire details that both ends share: capsules on the CONNECT stream, stream
headers, and how WebTransport application error codes sit inside the HTTP/3 error space.

The session's CONNECT stream carries capsules (RFC 9297) inside HTTP/3 DATA frames once it is open.
`CLOSE_WEBTRANSPORT_SESSION` carries a 32-bit application code and a UTF-8 reason of at most 1,024 bytes;
other capsule types are skipped without buffering their payload. Every parse failure raises `CapsuleError`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from aioquic.buffer import encode_uint_var

from darktower.core.errors import DarkTowerError

CLOSE_WEBTRANSPORT_SESSION: Final = 0x2843
DRAIN_WEBTRANSPORT_SESSION: Final = 0x78AE
MAX_CLOSE_REASON_BYTES: Final = 1024
MAX_APPLICATION_CODE: Final = 0xFFFF_FFFF

UNI_STREAM_TYPE: Final = 0x54
"""First varint of a WebTransport unidirectional stream, followed by the session id."""
BIDI_FRAME_TYPE: Final = 0x41
"""First varint of a WebTransport bidirectional stream opened by the client, followed by the session id."""

_FIRST_CODE: Final = 0x52E4A40FA8DB
_LAST_CODE: Final = 0x52E5AC983162
_MAX_CAPSULE_BYTES: Final = 4 + MAX_CLOSE_REASON_BYTES


class CapsuleError(DarkTowerError, ValueError):
    """The CONNECT stream does not hold well-formed capsules."""


class Capsule(NamedTuple):
    type: int
    payload: bytes


def uni_stream_header(session_id: int) -> bytes:
    return encode_uint_var(UNI_STREAM_TYPE) + encode_uint_var(session_id)


def bidi_stream_header(session_id: int) -> bytes:
    return encode_uint_var(BIDI_FRAME_TYPE) + encode_uint_var(session_id)


def datagram_prefix(session_id: int) -> bytes:
    """HTTP/3 datagrams start with the quarter stream id of the session's CONNECT stream."""
    return encode_uint_var(session_id // 4)


def encode_capsule(capsule_type: int, payload: bytes) -> bytes:
    return encode_uint_var(capsule_type) + encode_uint_var(len(payload)) + payload


def encode_close_session(code: int, reason: str) -> bytes:
    """The CLOSE_WEBTRANSPORT_SESSION capsule; a reason over 1,024 bytes is cut at a character boundary."""
    if not 0 <= code <= MAX_APPLICATION_CODE:
        raise CapsuleError(f"application code {code} is outside 0..{MAX_APPLICATION_CODE}")
    raw = reason.encode()[:MAX_CLOSE_REASON_BYTES]
    raw = raw.decode(errors="ignore").encode()
    return encode_capsule(CLOSE_WEBTRANSPORT_SESSION, code.to_bytes(4, "big") + raw)


def parse_close_session(payload: bytes) -> tuple[int, str]:
    """(application code, reason) of a CLOSE_WEBTRANSPORT_SESSION capsule's payload."""
    if len(payload) < 4:
        raise CapsuleError(f"close capsule of {len(payload)} bytes is shorter than its 4-byte code")
    if len(payload) > _MAX_CAPSULE_BYTES:
        raise CapsuleError(f"close capsule reason is over {MAX_CLOSE_REASON_BYTES} bytes")
    try:
        reason = payload[4:].decode()
    except UnicodeDecodeError:
        raise CapsuleError("close capsule reason is not UTF-8") from None
    return int.from_bytes(payload[:4], "big"), reason


def read_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """QUIC variable-length integer at `pos`: (value, position after it), or None when it is incomplete."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1 << (first >> 6)
    if pos + length > len(data):
        return None
    value = first & 0x3F
    for i in range(1, length):
        value = (value << 8) | data[pos + i]
    return value, pos + length


class CapsuleReader:
    """Sans-I/O splitter of a CONNECT stream's DATA into capsules, fed in arbitrary chunks.

    Known capsules are returned whole; unknown types are skipped as they arrive, so a peer cannot make the
    reader hold more than one close capsule's worth of bytes.
    """

    __slots__ = ("_buffer", "_skip")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[Capsule]:
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        buffer = self._buffer
        buffer += data
        capsules: list[Capsule] = []
        pos = 0
        while True:
            head = read_varint(buffer, pos)
            if head is None:
                break
            length_field = read_varint(buffer, head[1])
            if length_field is None:
                break
            capsule_type, (length, start) = head[0], length_field
            if capsule_type != CLOSE_WEBTRANSPORT_SESSION:
                available = min(length, len(buffer) - start)
                self._skip = length - available
                pos = start + available
                continue
            if length > _MAX_CAPSULE_BYTES:
                raise CapsuleError(f"close capsule of {length} bytes is over {_MAX_CAPSULE_BYTES}")
            if start + length > len(buffer):
                break
            capsules.append(Capsule(capsule_type, bytes(buffer[start : start + length])))
            pos = start + length
        del buffer[:pos]
        return capsules

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete capsule held back; non-zero at the end of the stream means truncation."""
        return len(self._buffer) + self._skip


def application_to_http3(code: int) -> int:
    """The HTTP/3 error code that carries WebTransport application code `code` on RESET_STREAM/STOP_SENDING."""
    if not 0 <= code <= MAX_APPLICATION_CODE:
        raise CapsuleError(f"application code {code} is outside 0..{MAX_APPLICATION_CODE}")
    return _FIRST_CODE + code + code // 0x1E


def http3_to_application(code: int) -> int | None:
    """The WebTransport application code inside an HTTP/3 error code, or None when it carries none."""
    if not _FIRST_CODE <= code <= _LAST_CODE or (code - 0x21) % 0x1F == 0:
        return None
    shifted = code - _FIRST_CODE
    return shifted - shifted // 0x1F
