"""The worker core's actions are small immutable records the adapter can match on by type."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from darktower.workers.actions import (
    Action,
    CloseSession,
    EndVideoGroup,
    SendDatagram,
    SendSignaling,
    SendVideo,
)

SAMPLES = [
    SendSignaling(1, b"\x02\x08\x01"),
    SendDatagram((1, 2), b"frame"),
    SendVideo((3,), 7, 2, b"frame", starts_group=True),
    EndVideoGroup((3, 4), 7, 2),
    CloseSession(1, 11, "replaced"),
]


def test_the_union_names_every_action() -> None:
    assert set(typing.get_args(Action)) == {type(action) for action in SAMPLES}


@pytest.mark.parametrize("action", SAMPLES, ids=lambda a: type(a).__name__)
def test_actions_are_frozen_slotted_values(action: Action) -> None:
    assert not hasattr(action, "__dict__")
    first = dataclasses.fields(action)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(action, first, None)
    assert action == dataclasses.replace(action)
    assert hash(action) == hash(dataclasses.replace(action))
