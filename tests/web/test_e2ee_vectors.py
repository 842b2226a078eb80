"""The key scheme of docs/E2EE.md agrees byte for byte between Python and the browser.

The checked-in vectors (tests/data/e2ee-vectors.json and its copy for the Vitest suite) are what
make_e2ee_vectors.py writes today, and every value in them follows from the file's own inputs here: an
identity from its private scalar, HELLO bytes, ECDH, both wrap keys, the safety number, the MEDIA_KEY, the
media frame opened by a key manager that learnt the key from those messages, and every refusal.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from darktower.client.e2ee import KeyManager, Opened, SendKeyMessage
from darktower.client.keymessages import (
    Hello,
    Identity,
    KeyMessageError,
    MediaKey,
    SealedMediaKey,
    decode_key_message,
    encode_hello,
    load_public_key,
    open_media_key,
    safety_number,
    seal_media_key,
    wrap_key,
)
from darktower.client.sframe import CipherSuite
from darktower.proto.frame import decode_frame

HERE = Path(__file__).resolve().parent
GENERATOR = HERE / "make_e2ee_vectors.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_e2ee_vectors", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR_MODULE = _load_generator()
VECTORS: dict[str, Any] = json.loads(GENERATOR_MODULE.VECTORS_PATH.read_text(encoding="utf-8"))


def _identity(side: str) -> Identity:
    return Identity.from_scalar(bytes.fromhex(VECTORS[side]["private_scalar"]))


def test_the_checked_in_vectors_and_their_web_copy_are_current() -> None:
    fresh = GENERATOR_MODULE.render()
    for path in (GENERATOR_MODULE.VECTORS_PATH, GENERATOR_MODULE.WEB_COPY_PATH):
        assert path.read_text(encoding="utf-8") == fresh, (
            f"{path} is stale: run .venv/bin/python tests/web/make_e2ee_vectors.py"
        )


def test_identities_hellos_ecdh_wrap_keys_and_the_safety_number() -> None:
    sender, recipient = _identity("sender"), _identity("recipient")
    assert sender.public_key.hex() == VECTORS["sender"]["public_key"]
    assert recipient.public_key.hex() == VECTORS["recipient"]["public_key"]
    assert encode_hello(sender.public_key).hex() == VECTORS["sender"]["hello"]
    assert decode_key_message(bytes.fromhex(VECTORS["recipient"]["hello"])) == Hello(recipient.public_key)
    assert sender.shared_secret(recipient.public_key).hex() == VECTORS["ecdh_x"]
    assert recipient.shared_secret(sender.public_key).hex() == VECTORS["ecdh_x"]
    out = wrap_key(recipient, sender.public_key, sender.public_key, recipient.public_key)
    back = wrap_key(sender, recipient.public_key, recipient.public_key, sender.public_key)
    assert out.hex() == VECTORS["wrap_key_sender_to_recipient"]
    assert back.hex() == VECTORS["wrap_key_recipient_to_sender"]
    number = VECTORS["safety_number"]
    assert safety_number(sender.public_key, recipient.public_key) == number
    assert safety_number(recipient.public_key, sender.public_key) == number
    assert len(number) == 35
    assert [len(group) for group in number.split(" ")] == [5] * 6


def test_the_media_key_message_seals_and_opens() -> None:
    vector = VECTORS["media_key"]
    wrap = bytes.fromhex(VECTORS["wrap_key_sender_to_recipient"])
    key = MediaKey(CipherSuite(vector["cipher_suite"]), int(vector["kid"]), bytes.fromhex(vector["base_key"]))
    sender_id, recipient_id = VECTORS["sender"]["participant_id"], VECTORS["recipient"]["participant_id"]
    message = seal_media_key(wrap, sender_id, recipient_id, key, bytes.fromhex(vector["nonce"]))
    assert message.hex() == vector["message"]
    decoded = decode_key_message(message)
    assert isinstance(decoded, SealedMediaKey)
    assert open_media_key(wrap, sender_id, recipient_id, decoded) == key


def test_a_key_manager_learns_the_key_from_the_messages_and_opens_the_frame() -> None:
    sender_id, recipient_id = VECTORS["sender"]["participant_id"], VECTORS["recipient"]["participant_id"]
    manager = KeyManager(_identity("recipient"))
    manager.joined(recipient_id, [(sender_id, True)], 0)
    replies = manager.receive(sender_id, bytes.fromhex(VECTORS["sender"]["hello"]), 0)
    assert [type(action) for action in replies] == [SendKeyMessage]  # its current key to an existing member
    assert manager.receive(sender_id, bytes.fromhex(VECTORS["media_key"]["message"]), 0) == []
    assert manager.safety_number(sender_id) == VECTORS["safety_number"]
    vector = VECTORS["media_frame"]
    header, payload = decode_frame(bytes.fromhex(vector["frame"]))
    frame = bytes.fromhex(vector["frame"])
    assert frame[:24].hex() == vector["metadata"]
    opened = manager.open(sender_id, bytes(payload), frame[:28], 0, video=True)
    assert opened == Opened(bytes.fromhex(vector["plaintext"]), int(VECTORS["media_key"]["kid"]))
    assert header.track_id == 7


def _receive(payload: bytes) -> None:
    wrap = bytes.fromhex(VECTORS["wrap_key_sender_to_recipient"])
    sender_id, recipient_id = VECTORS["sender"]["participant_id"], VECTORS["recipient"]["participant_id"]
    message = decode_key_message(payload)
    if isinstance(message, Hello):
        load_public_key(message.public_key)
    else:
        open_media_key(wrap, sender_id, recipient_id, message)


@pytest.mark.parametrize("case", VECTORS["refused"], ids=lambda case: case["name"])
def test_refused_key_messages(case: dict[str, Any]) -> None:
    with pytest.raises(KeyMessageError) as raised:
        _receive(bytes.fromhex(case["payload"]))
    assert raised.value.code == case["refusal"]
