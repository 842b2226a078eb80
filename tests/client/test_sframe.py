"""SFrame (RFC 9605): the RFC's published vectors, round trips, and every way a frame must be refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darktower.client.sframe import (
    MAX_HEADER_SIZE,
    MAX_U64,
    CipherSuite,
    Decrypted,
    SFrameAuthError,
    SFrameContext,
    SFrameError,
    SFrameHeader,
    SFrameHeaderError,
    SFrameKey,
    SFrameKeyError,
    SFrameReplayError,
    SFrameUnknownKeyError,
    aead_decrypt,
    aead_encrypt,
    decode_header,
    derive_key_salt,
    encode_header,
    key_label,
    salt_label,
)
from darktower.core.errors import DarkTowerError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "sframe-rfc9605.json").read_text(encoding="utf-8")
)
BASE_KEY = bytes(range(16))
SUITES = list(CipherSuite)

u64 = st.integers(min_value=0, max_value=MAX_U64)
suites = st.sampled_from(SUITES)


def _id(vector: dict[str, Any]) -> str:
    return f"suite{vector['cipher_suite']}"


def _pair(suite: CipherSuite, kid: int = 9, *, window: int = 1024) -> tuple[SFrameContext, SFrameContext]:
    """A sender holding KID for encryption and a receiver holding it for decryption."""
    sender = SFrameContext(suite)
    receiver = SFrameContext(suite, replay_window=window)
    sender.add_encryption_key(kid, BASE_KEY)
    receiver.add_decryption_key(kid, BASE_KEY)
    return sender, receiver


def _body(frame: bytes) -> bytes:
    return frame[decode_header(frame).size :]


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= 1 << bit
    return bytes(flipped)


# --- the RFC's vectors ------------------------------------------------------------------------------------


def test_the_vector_file_names_its_source_and_covers_every_suite() -> None:
    assert "sframe-wg/sframe" in VECTORS["source"]
    assert len(VECTORS["header"]) == 289
    assert sorted(vector["cipher_suite"] for vector in VECTORS["sframe"]) == [suite.value for suite in SUITES]
    assert sorted(vector["cipher_suite"] for vector in VECTORS["aes_ctr_hmac"]) == [1, 2, 3]


@pytest.mark.parametrize("vector", VECTORS["header"], ids=lambda vector: vector["encoded"])
def test_header_vectors_encode_and_decode(vector: dict[str, Any]) -> None:
    encoded = bytes.fromhex(vector["encoded"])
    assert encode_header(vector["kid"], vector["ctr"]) == encoded
    assert decode_header(encoded) == SFrameHeader(vector["kid"], vector["ctr"], len(encoded))
    assert decode_header(encoded + b"\xaa\xbb") == SFrameHeader(vector["kid"], vector["ctr"], len(encoded))


@pytest.mark.parametrize("vector", VECTORS["aes_ctr_hmac"], ids=_id)
def test_aes_ctr_hmac_aead_vectors(vector: dict[str, Any]) -> None:
    suite = CipherSuite(vector["cipher_suite"])
    key, nonce, aad = (bytes.fromhex(vector[name]) for name in ("key", "nonce", "aad"))
    plaintext, ciphertext = bytes.fromhex(vector["pt"]), bytes.fromhex(vector["ct"])
    assert key == bytes.fromhex(vector["enc_key"]) + bytes.fromhex(vector["auth_key"])
    assert aead_encrypt(suite, key, nonce, aad, plaintext) == ciphertext
    assert aead_decrypt(suite, key, nonce, aad, ciphertext) == plaintext
    for index in range(len(ciphertext)):
        with pytest.raises(SFrameAuthError):
            aead_decrypt(suite, key, nonce, aad, _flip(ciphertext, index))
    with pytest.raises(SFrameAuthError):
        aead_decrypt(suite, key, nonce, aad + b"!", ciphertext)


@pytest.mark.parametrize("vector", VECTORS["sframe"], ids=_id)
def test_sframe_vectors_key_schedule_nonce_and_ciphertext(vector: dict[str, Any]) -> None:
    suite = CipherSuite(vector["cipher_suite"])
    kid, ctr = vector["kid"], vector["ctr"]
    base_key, metadata = bytes.fromhex(vector["base_key"]), bytes.fromhex(vector["metadata"])
    plaintext, frame = bytes.fromhex(vector["pt"]), bytes.fromhex(vector["ct"])

    assert key_label(suite, kid).hex() == vector["sframe_key_label"]
    assert salt_label(suite, kid).hex() == vector["sframe_salt_label"]
    key, salt = derive_key_salt(suite, kid, base_key)
    assert (key.hex(), salt.hex()) == (vector["sframe_key"], vector["sframe_salt"])
    sframe_key = SFrameKey(suite, kid, key, salt)
    assert sframe_key.nonce(ctr).hex() == vector["nonce"]
    assert (encode_header(kid, ctr) + metadata).hex() == vector["aad"]
    assert sframe_key.seal(ctr, plaintext, metadata) == frame
    assert sframe_key.open(decode_header(frame), frame, metadata) == plaintext


@pytest.mark.parametrize("vector", VECTORS["sframe"], ids=_id)
def test_sframe_vectors_decrypt_through_a_context(vector: dict[str, Any]) -> None:
    context = SFrameContext(CipherSuite(vector["cipher_suite"]))
    context.add_decryption_key(vector["kid"], bytes.fromhex(vector["base_key"]))
    frame, metadata = bytes.fromhex(vector["ct"]), bytes.fromhex(vector["metadata"])
    assert context.decrypt(frame, metadata) == Decrypted(
        vector["kid"], vector["ctr"], bytes.fromhex(vector["pt"])
    )
    with pytest.raises(SFrameReplayError):
        context.decrypt(frame, metadata)


# --- header ------------------------------------------------------------------------------------------------


@given(kid=u64, ctr=u64)
def test_headers_round_trip_at_their_minimal_size(kid: int, ctr: int) -> None:
    encoded = encode_header(kid, ctr)
    assert decode_header(encoded) == SFrameHeader(kid, ctr, len(encoded))
    expected = 1 + sum(0 if value < 8 else max(1, (value.bit_length() + 7) // 8) for value in (kid, ctr))
    assert len(encoded) == expected


@given(data=st.binary(max_size=20))
def test_decoding_arbitrary_bytes_yields_a_canonical_header_or_a_header_error(data: bytes) -> None:
    try:
        header = decode_header(data)
    except SFrameHeaderError:
        return
    assert encode_header(header.kid, header.ctr) == data[: header.size]


@pytest.mark.parametrize(
    ("encoded", "match"),
    [
        ("", "empty"),
        ("80", "KID needs 1 bytes"),
        ("f0ffffffffffffff", "KID needs 8 bytes"),
        ("08", "CTR needs 1 bytes"),
        ("0f01020304050607", "CTR needs 8 bytes"),
        ("8fff", "CTR needs 8 bytes, 0 left"),
        ("8007", "KID 7 is not in its minimal encoding"),
        ("900008", "KID 8 is not in its minimal encoding"),
        ("0805", "CTR 5 is not in its minimal encoding"),
        ("0900ff", "CTR 255 is not in its minimal encoding"),
        ("0f0000000000000001", "CTR 1 is not in its minimal encoding"),
    ],
)
def test_malformed_headers_are_refused(encoded: str, match: str) -> None:
    with pytest.raises(SFrameHeaderError, match=match):
        decode_header(bytes.fromhex(encoded))


def test_the_largest_header_is_max_header_size() -> None:
    assert len(encode_header(MAX_U64, MAX_U64)) == MAX_HEADER_SIZE


@pytest.mark.parametrize(("kid", "ctr"), [(-1, 0), (0, -1), (MAX_U64 + 1, 0), (0, MAX_U64 + 1)])
def test_out_of_range_values_cannot_be_encoded(kid: int, ctr: int) -> None:
    with pytest.raises(SFrameHeaderError, match="outside"):
        encode_header(kid, ctr)


# --- round trips -------------------------------------------------------------------------------------------


@given(suite=suites, kid=u64, plaintext=st.binary(max_size=2048), metadata=st.binary(max_size=64))
def test_every_suite_round_trips_through_a_context(
    suite: CipherSuite, kid: int, plaintext: bytes, metadata: bytes
) -> None:
    sender, receiver = _pair(suite, kid)
    for ctr in range(3):
        frame = sender.encrypt(kid, plaintext, metadata)
        assert decode_header(frame) == SFrameHeader(kid, ctr, len(encode_header(kid, ctr)))
        assert len(frame) == len(encode_header(kid, ctr)) + len(plaintext) + suite.params.nt
        assert receiver.decrypt(frame, metadata) == Decrypted(kid, ctr, plaintext)


@given(suite=suites, ctr=u64, plaintext=st.binary(max_size=256))
def test_a_key_seals_and_opens_at_any_counter(suite: CipherSuite, ctr: int, plaintext: bytes) -> None:
    key = SFrameKey.derive(suite, 300, BASE_KEY)
    frame = key.seal(ctr, plaintext)
    assert key.open(decode_header(frame), frame) == plaintext


def test_buffers_other_than_bytes_are_accepted() -> None:
    sender, receiver = _pair(CipherSuite.AES_128_CTR_HMAC_SHA256_80)
    frame = sender.encrypt(9, memoryview(b"media"), bytearray(b"meta"))
    assert receiver.decrypt(memoryview(frame), memoryview(b"meta")).plaintext == b"media"


def test_the_same_plaintext_never_repeats_a_ciphertext() -> None:
    sender, _ = _pair(CipherSuite.AES_128_GCM_SHA256_128)
    frames = {_body(sender.encrypt(9, b"same")) for _ in range(50)}
    assert len(frames) == 50


# --- tampering ---------------------------------------------------------------------------------------------


@given(suite=suites, data=st.data())
def test_any_flipped_bit_in_the_body_fails_authentication(suite: CipherSuite, data: st.DataObject) -> None:
    sender, receiver = _pair(suite)
    frame = sender.encrypt(9, b"secret media payload", b"meta")
    size = decode_header(frame).size
    index = data.draw(st.integers(min_value=size, max_value=len(frame) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(SFrameAuthError):
        receiver.decrypt(_flip(frame, index, bit), b"meta")
    assert receiver.decrypt(frame, b"meta").plaintext == b"secret media payload"


@pytest.mark.parametrize("suite", SUITES)
def test_a_tampered_header_never_yields_plaintext(suite: CipherSuite) -> None:
    sender, receiver = _pair(suite, kid=9)
    receiver.add_decryption_key(8, BASE_KEY)
    for _ in range(300):
        frame = sender.encrypt(9, b"payload")
    size = decode_header(frame).size
    for index in range(size):
        for bit in range(8):
            with pytest.raises((SFrameAuthError, SFrameHeaderError, SFrameUnknownKeyError)):
                receiver.decrypt(_flip(frame, index, bit))
    assert receiver.decrypt(frame).ctr == 299


@pytest.mark.parametrize("suite", SUITES)
def test_wrong_metadata_truncation_and_a_foreign_key_fail_authentication(suite: CipherSuite) -> None:
    sender, receiver = _pair(suite)
    frame = sender.encrypt(9, b"payload", b"track 1")
    with pytest.raises(SFrameAuthError):
        receiver.decrypt(frame, b"track 2")
    with pytest.raises(SFrameAuthError):
        receiver.decrypt(frame)
    for keep in (len(frame) - 1, len(frame) - suite.params.nt, decode_header(frame).size):
        with pytest.raises(SFrameAuthError):
            receiver.decrypt(frame[:keep], b"track 1")
    with pytest.raises(SFrameHeaderError):
        receiver.decrypt(frame[:1], b"track 1")
    stranger = SFrameContext(suite)
    stranger.add_decryption_key(9, bytes(16))
    with pytest.raises(SFrameAuthError):
        stranger.decrypt(frame, b"track 1")
    assert receiver.decrypt(frame, b"track 1").plaintext == b"payload"


def test_a_forged_frame_does_not_burn_its_counter() -> None:
    sender, receiver = _pair(CipherSuite.AES_128_CTR_HMAC_SHA256_32)
    frame = sender.encrypt(9, b"genuine")
    with pytest.raises(SFrameAuthError):
        receiver.decrypt(_flip(frame, len(frame) - 1))
    assert receiver.decrypt(frame).plaintext == b"genuine"


# --- replay ------------------------------------------------------------------------------------------------


def test_replays_are_refused_and_reordering_inside_the_window_is_not() -> None:
    sender, receiver = _pair(CipherSuite.AES_128_GCM_SHA256_128, window=4)
    frames = [sender.encrypt(9, bytes([n])) for n in range(12)]
    assert receiver.decrypt(frames[10]).ctr == 10
    with pytest.raises(SFrameReplayError, match="already accepted"):
        receiver.decrypt(frames[10])
    assert [receiver.decrypt(frames[n]).ctr for n in (8, 7, 11, 9)] == [8, 7, 11, 9]
    for n in (8, 9, 11):
        with pytest.raises(SFrameReplayError, match="already accepted"):
            receiver.decrypt(frames[n])
    for n in (0, 6, 7):
        with pytest.raises(SFrameReplayError, match="older than the replay window"):
            receiver.decrypt(frames[n])


@given(order=st.permutations(range(40)))
def test_any_order_inside_the_window_is_accepted_exactly_once(order: list[int]) -> None:
    sender, receiver = _pair(CipherSuite.AES_128_CTR_HMAC_SHA256_64, window=64)
    frames = [sender.encrypt(9, bytes([n])) for n in range(40)]
    for n in order:
        assert receiver.decrypt(frames[n]).plaintext == bytes([n])
    for n in order:
        with pytest.raises(SFrameReplayError):
            receiver.decrypt(frames[n])


def test_replay_windows_are_per_kid() -> None:
    sender = SFrameContext(CipherSuite.AES_128_GCM_SHA256_128)
    receiver = SFrameContext(CipherSuite.AES_128_GCM_SHA256_128)
    for kid in (1, 2):
        sender.add_encryption_key(kid, bytes([kid]) * 16)
        receiver.add_decryption_key(kid, bytes([kid]) * 16)
    first, second = sender.encrypt(1, b"a"), sender.encrypt(2, b"b")
    assert (receiver.decrypt(first).ctr, receiver.decrypt(second).ctr) == (0, 0)
    with pytest.raises(SFrameReplayError):
        receiver.decrypt(second)


# --- keys --------------------------------------------------------------------------------------------------


def test_unknown_kid_is_reported_with_the_kid() -> None:
    sender, _ = _pair(CipherSuite.AES_128_GCM_SHA256_128, kid=77)
    receiver = SFrameContext(CipherSuite.AES_128_GCM_SHA256_128)
    with pytest.raises(SFrameUnknownKeyError, match="no key was given") as caught:
        receiver.decrypt(sender.encrypt(77, b"x"))
    assert caught.value.kid == 77


def test_a_client_does_not_decrypt_with_its_own_sending_key() -> None:
    sender, _ = _pair(CipherSuite.AES_128_GCM_SHA256_128)
    with pytest.raises(SFrameUnknownKeyError, match="own encryption key"):
        sender.decrypt(sender.encrypt(9, b"echo"))
    with pytest.raises(SFrameKeyError, match="not an encryption key"):
        SFrameContext(CipherSuite.AES_128_GCM_SHA256_128).encrypt(9, b"x")


def test_rotation_overlap_then_retirement_refuses_old_key_frames() -> None:
    suite = CipherSuite.AES_256_GCM_SHA512_128
    sender, receiver = _pair(suite, kid=1)
    old = sender.encrypt(1, b"before rotation")
    sender.add_encryption_key(2, b"\x02" * 32)
    receiver.add_decryption_key(2, b"\x02" * 32)
    new = sender.encrypt(2, b"after rotation")
    late_old = sender.encrypt(1, b"in flight during rotation")
    assert [receiver.decrypt(frame).plaintext for frame in (new, old, late_old)] == [
        b"after rotation",
        b"before rotation",
        b"in flight during rotation",
    ]
    sender.retire_key(1)
    receiver.retire_key(1)
    assert not receiver.has_key(1)
    assert receiver.has_key(2)
    with pytest.raises(SFrameKeyError, match="not an encryption key"):
        sender.encrypt(1, b"after retirement")
    for frame in (old, late_old):
        with pytest.raises(SFrameUnknownKeyError, match="retired"):
            receiver.decrypt(frame)
    with pytest.raises(SFrameKeyError, match="was retired"):
        receiver.add_decryption_key(1, BASE_KEY)
    with pytest.raises(SFrameKeyError, match="no key to retire"):
        receiver.retire_key(1)


def test_key_store_misuse_is_refused() -> None:
    context = SFrameContext(CipherSuite.AES_128_GCM_SHA256_128)
    context.add_encryption_key(1, BASE_KEY)
    with pytest.raises(SFrameKeyError, match="already has a key"):
        context.add_decryption_key(1, BASE_KEY)
    with pytest.raises(SFrameKeyError, match="already has a key"):
        context.add_encryption_key(1, BASE_KEY)
    with pytest.raises(SFrameKeyError, match="base key of 15 bytes"):
        context.add_decryption_key(2, bytes(15))
    with pytest.raises(SFrameKeyError, match="outside"):
        context.add_decryption_key(MAX_U64 + 1, BASE_KEY)
    with pytest.raises(SFrameKeyError, match="replay window"):
        SFrameContext(CipherSuite.AES_128_GCM_SHA256_128, replay_window=0)


def test_a_spent_counter_refuses_to_encrypt_again() -> None:
    sender, receiver = _pair(CipherSuite.AES_128_CTR_HMAC_SHA256_80)
    sender._sending[9].next_ctr = MAX_U64
    assert receiver.decrypt(sender.encrypt(9, b"last")).ctr == MAX_U64
    with pytest.raises(SFrameKeyError, match="every CTR value"):
        sender.encrypt(9, b"one too many")


@pytest.mark.parametrize("suite", SUITES)
def test_raw_aead_and_key_parameters_are_checked(suite: CipherSuite) -> None:
    params = suite.params
    with pytest.raises(SFrameKeyError, match="byte key"):
        aead_encrypt(suite, bytes(params.nk - 1), bytes(params.nn), b"", b"")
    with pytest.raises(SFrameKeyError, match="byte nonce"):
        aead_decrypt(suite, bytes(params.nk), bytes(params.nn + 1), b"", bytes(params.nt))
    with pytest.raises(SFrameKeyError, match="byte salt"):
        SFrameKey(suite, 0, bytes(params.nk), bytes(params.nn - 1))
    with pytest.raises(SFrameAuthError):
        aead_decrypt(suite, bytes(params.nk), bytes(params.nn), b"", bytes(params.nt - 1))


def test_a_key_refuses_a_header_with_another_kid() -> None:
    key = SFrameKey.derive(CipherSuite.AES_128_GCM_SHA256_128, 1, BASE_KEY)
    frame = SFrameKey.derive(CipherSuite.AES_128_GCM_SHA256_128, 2, BASE_KEY).seal(0, b"x")
    with pytest.raises(SFrameUnknownKeyError, match="this key is KID 1"):
        key.open(decode_header(frame), frame)


def test_every_sframe_error_is_a_dark_tower_error() -> None:
    for error in (
        SFrameHeaderError,
        SFrameUnknownKeyError,
        SFrameAuthError,
        SFrameReplayError,
        SFrameKeyError,
    ):
        assert issubclass(error, SFrameError)
    assert issubclass(SFrameError, DarkTowerError)
