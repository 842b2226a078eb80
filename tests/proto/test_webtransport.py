"""WebTransport capsules and error-code mapping: round trips, arbitrary splits, bounded buffering."""

from __future__ import annotations

import pytest
from aioquic.buffer import encode_uint_var
from hypothesis import given
from hypothesis import strategies as st

from darktower.proto.webtransport import (
    CLOSE_WEBTRANSPORT_SESSION,
    DRAIN_WEBTRANSPORT_SESSION,
    MAX_APPLICATION_CODE,
    Capsule,
    CapsuleError,
    CapsuleReader,
    application_to_http3,
    encode_capsule,
    encode_close_session,
    http3_to_application,
    parse_close_session,
    read_varint,
)

codes = st.integers(0, MAX_APPLICATION_CODE)


def feed_in_pieces(reader: CapsuleReader, stream: bytes, cuts: list[int]) -> list[Capsule]:
    out: list[Capsule] = []
    pos = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        out.extend(reader.feed(stream[pos:cut]))
        pos = cut
    return out


@given(codes, st.text(max_size=300), st.lists(st.integers(0, 2000), max_size=8))
def test_a_close_capsule_split_anywhere_comes_out_whole(code: int, reason: str, cuts: list[int]) -> None:
    reader = CapsuleReader()
    capsules = feed_in_pieces(reader, encode_close_session(code, reason), cuts)
    assert len(capsules) == 1
    assert capsules[0].type == CLOSE_WEBTRANSPORT_SESSION
    assert parse_close_session(capsules[0].payload) == (code, reason)
    assert reader.buffered == 0


@given(st.binary(max_size=5000), st.lists(st.integers(0, 6000), max_size=8))
def test_unknown_capsules_are_skipped_without_being_held(payload: bytes, cuts: list[int]) -> None:
    reader = CapsuleReader()
    stream = encode_capsule(DRAIN_WEBTRANSPORT_SESSION, payload) + encode_close_session(1, "x")
    pos = 0
    capsules: list[Capsule] = []
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        capsules.extend(reader.feed(stream[pos:cut]))
        assert len(reader._buffer) <= 16 + 1030
        pos = cut
    assert [parse_close_session(c.payload) for c in capsules] == [(1, "x")]


def test_a_long_reason_is_cut_at_a_character_boundary() -> None:
    capsule = CapsuleReader().feed(encode_close_session(2, "é" * 600))[0]
    code, reason = parse_close_session(capsule.payload)
    assert (code, reason) == (2, "é" * 512)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"\x00\x00\x01", "shorter than its 4-byte code"), (b"\x00\x00\x00\x01\xff", "not UTF-8")],
)
def test_malformed_close_payloads_raise_capsule_error(payload: bytes, message: str) -> None:
    with pytest.raises(CapsuleError, match=message):
        parse_close_session(payload)


def test_an_oversized_close_capsule_is_refused_before_it_is_buffered() -> None:
    header = encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(100_000)
    with pytest.raises(CapsuleError, match="over"):
        CapsuleReader().feed(header)


def test_codes_outside_32_bits_are_refused() -> None:
    with pytest.raises(CapsuleError):
        encode_close_session(MAX_APPLICATION_CODE + 1, "")
    with pytest.raises(CapsuleError):
        application_to_http3(-1)


@given(codes)
def test_application_codes_round_trip_through_http3_codes(code: int) -> None:
    assert http3_to_application(application_to_http3(code)) == code


@pytest.mark.parametrize(
    "http3_code", [0, 0x100, 0x52E4A40FA8DB - 1, 0x52E4A40FA8DB + 0x1E, 0x52E5AC983162 + 1]
)
def test_http3_codes_that_carry_no_application_code_map_to_none(http3_code: int) -> None:
    assert http3_to_application(http3_code) is None


@given(st.integers(0, 2**62 - 1))
def test_varints_read_back(value: int) -> None:
    encoded = encode_uint_var(value)
    assert read_varint(b"\x00" + encoded, 1) == (value, 1 + len(encoded))
    assert read_varint(encoded[:-1], 0) is None or len(encoded) == 1
