"""Length-delimited signaling framing and protobuf decoding fail only with SignalingError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import (
    DelimitedReader,
    SignalingError,
    encode_delimited,
    encode_varint,
    parse_client_message,
    parse_server_message,
)


@given(st.lists(st.text(max_size=300), min_size=1, max_size=6), st.data())
def test_messages_split_at_any_point_come_out_whole_and_in_order(
    tokens: list[str], data: st.DataObject
) -> None:
    messages = [pb.ClientMessage(request_id=i + 1, join=pb.Join(token=t)) for i, t in enumerate(tokens)]
    stream = b"".join(encode_delimited(m) for m in messages)
    reader = DelimitedReader(max_message_bytes=4096)
    bodies: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, len(stream) - pos))
        bodies.extend(reader.feed(stream[pos : pos + step]))
        pos += step
    assert [parse_client_message(b) for b in bodies] == messages
    assert reader.buffered == 0


def test_a_length_prefix_over_the_limit_is_refused() -> None:
    reader = DelimitedReader(max_message_bytes=100)
    with pytest.raises(SignalingError, match="101 bytes is over the limit of 100"):
        reader.feed(encode_varint(101))


def test_a_length_prefix_of_six_bytes_is_refused() -> None:
    with pytest.raises(SignalingError, match="longer than 5 bytes"):
        DelimitedReader(max_message_bytes=100).feed(b"\xff" * 6)


def test_an_incomplete_prefix_waits_for_more_bytes() -> None:
    reader = DelimitedReader(max_message_bytes=1000)
    assert reader.feed(b"\x81") == []
    assert reader.feed(b"\x01" + bytes(129)) == [bytes(129)]


@given(st.binary(max_size=300))
def test_arbitrary_bodies_parse_or_raise_signaling_error_only(body: bytes) -> None:
    for parse in (parse_client_message, parse_server_message):
        with contextlib.suppress(SignalingError):
            parse(body)


def test_garbage_body_names_the_expected_message_type() -> None:
    with pytest.raises(SignalingError, match="not a ClientMessage"):
        parse_client_message(b"\x0a\xff\xff")
