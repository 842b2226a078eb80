"""The media frame codec: every valid frame round-trips; every malformed input raises FrameError only."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from darktower.proto.frame import (
    HEADER_SIZE,
    MAX_U32,
    MAX_U64,
    FrameError,
    FrameReader,
    decode_frame,
    encode_frame,
    parse_header,
)

u32 = st.integers(0, MAX_U32)
frames = st.fixed_dictionaries(
    {
        "track_id": u32,
        "group": u32,
        "object_seq": u32,
        "capture_us": st.integers(0, MAX_U64),
        "payload": st.binary(max_size=2048),
        "keyframe": st.booleans(),
        "spatial_layer": st.integers(0, 15),
        "temporal_layer": st.integers(0, 15),
        "level_dbov": st.integers(0, 127),
        "voice_activity": st.booleans(),
    }
)


@given(frames)
def test_every_valid_frame_round_trips(fields: dict[str, object]) -> None:
    data = encode_frame(**fields)  # type: ignore[arg-type]
    header, payload = decode_frame(data)
    assert bytes(payload) == fields["payload"]
    assert header.track_id == fields["track_id"]
    assert header.group == fields["group"]
    assert header.object_seq == fields["object_seq"]
    assert header.capture_us == fields["capture_us"]
    assert header.keyframe == fields["keyframe"]
    assert header.spatial_layer == fields["spatial_layer"]
    assert header.temporal_layer == fields["temporal_layer"]
    assert header.level_dbov == fields["level_dbov"]
    assert header.voice_activity == fields["voice_activity"]
    assert header.payload_length == len(data) - HEADER_SIZE


def test_the_header_layout_matches_the_spec() -> None:
    data = encode_frame(
        track_id=0x01020304,
        group=0x05060708,
        object_seq=0x090A0B0C,
        capture_us=0x1112131415161718,
        payload=b"xy",
        keyframe=True,
        spatial_layer=2,
        temporal_layer=3,
        level_dbov=42,
        voice_activity=True,
    )
    assert data.hex() == ("010123aa01020304050607081112131415161718090a0b0c000000027879")


@given(frames, st.data())
def test_every_truncation_raises_frame_error(fields: dict[str, object], data: st.DataObject) -> None:
    encoded = encode_frame(**fields)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(FrameError):
        decode_frame(encoded[:cut])


@given(st.binary(max_size=200))
@example(b"\x02" + bytes(27))
@example(b"\x01\x80" + bytes(26))
def test_arbitrary_bytes_either_decode_or_raise_frame_error_only(data: bytes) -> None:
    try:
        header, payload = decode_frame(data)
    except FrameError:
        return
    assert len(payload) == header.payload_length


@given(frames, st.data())
def test_a_corrupted_frame_raises_frame_error_or_decodes_consistently(
    fields: dict[str, object], data: st.DataObject
) -> None:
    encoded = bytearray(encode_frame(**fields))  # type: ignore[arg-type]
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        header, payload = decode_frame(encoded)
    except FrameError:
        return
    assert len(payload) == header.payload_length == len(encoded) - HEADER_SIZE


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x02" + b[1:], "unsupported frame version 2"),
        (lambda b: b[:1] + b"\x02" + b[2:], "reserved flag bits set: 0x02"),
        (lambda b: b + b"\x00", "frame is 32 bytes but its header says 31"),
        (lambda b: b[:10], "truncated header: 10 of 28 bytes"),
    ],
)
def test_each_kind_of_malformed_frame_gets_a_precise_message(mutate: object, message: str) -> None:
    valid = encode_frame(track_id=1, group=0, object_seq=0, capture_us=0, payload=b"abc")
    with pytest.raises(FrameError, match=message):
        decode_frame(mutate(valid))  # type: ignore[operator]


def test_a_payload_over_the_limit_is_refused_before_it_arrives() -> None:
    header = struct.pack("!BBBBIIQII", 1, 0, 0, 127, 1, 0, 0, 0, 5000)
    with pytest.raises(FrameError, match="over the limit of 4096"):
        parse_header(header, max_payload=4096)


def test_out_of_range_fields_are_refused_when_encoding() -> None:
    with pytest.raises(FrameError, match="spatial_layer 16"):
        encode_frame(track_id=1, group=0, object_seq=0, capture_us=0, payload=b"", spatial_layer=16)


@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_a_stream_reader_fed_in_arbitrary_chunks_yields_the_same_frames(
    many: list[dict[str, object]], data: st.DataObject
) -> None:
    encoded = [encode_frame(**f) for f in many]  # type: ignore[arg-type]
    stream = b"".join(encoded)
    reader = FrameReader()
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, max(1, len(stream) - pos)))
        got.extend(raw for _, raw in reader.feed(stream[pos : pos + step]))
        pos += step
    reader.close()
    assert got == encoded


def test_a_stream_that_ends_inside_a_frame_raises_frame_error() -> None:
    reader = FrameReader()
    assert (
        reader.feed(encode_frame(track_id=1, group=0, object_seq=0, capture_us=0, payload=b"abcd")[:-1]) == []
    )
    with pytest.raises(FrameError, match="stream ended inside a frame"):
        reader.close()


def test_a_stream_reader_refuses_a_corrupt_header() -> None:
    reader = FrameReader(max_payload=100)
    with pytest.raises(FrameError, match="over the limit of 100"):
        reader.feed(encode_frame(track_id=1, group=0, object_seq=0, capture_us=0, payload=bytes(101)))
