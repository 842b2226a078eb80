"""Length-delimited protobuf framing for the signaling stream (see signaling.proto).

Each message is a varint length followed by that many bytes, the same framing as protobuf's
`writeDelimited` in other languages. Every failure raises `SignalingError`, so the session guards one type.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import DecodeError

from darktower.core.errors import DarkTowerError
from darktower.proto import signaling_pb2 as pb

_MAX_VARINT_BYTES: Final = 5  # a length prefix never exceeds 32 bits


class SignalingError(DarkTowerError, ValueError):
    """Bytes on the signaling stream are not a valid length-delimited message of the expected type."""


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_delimited(message: pb.ClientMessage | pb.ServerMessage) -> bytes:
    body = message.SerializeToString()
    return encode_varint(len(body)) + body


class DelimitedReader:
    """Sans-I/O splitter of a byte stream into length-delimited message bodies.

    A length prefix over `max_message_bytes` or longer than five bytes raises `SignalingError`; the stream
    cannot be resynchronised after that, so the caller closes it.
    """

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_message_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        offset = 0
        buffer = self._buffer
        while (prefix := _read_varint(buffer, offset)) is not None:
            length, start = prefix
            if length > self._max:
                raise SignalingError(f"message of {length} bytes is over the limit of {self._max}")
            if start + length > len(buffer):
                break
            bodies.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return bodies

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def _read_varint(buffer: bytearray, pos: int) -> tuple[int, int] | None:
    """Returns (value, position after it), or None when the prefix has not fully arrived."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buffer):
            return None
        byte = buffer[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise SignalingError("length prefix longer than 5 bytes")


def parse_client_message(body: bytes) -> pb.ClientMessage:
    message = pb.ClientMessage()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise SignalingError(f"not a ClientMessage: {exc}") from None
    return message


def parse_server_message(body: bytes) -> pb.ServerMessage:
    message = pb.ServerMessage()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise SignalingError(f"not a ServerMessage: {exc}") from None
    return message
