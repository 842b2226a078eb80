"""Builders of the signaling actions the core sends: encoded once, addressed to one or many sessions."""

from __future__ import annotations

from collections.abc import Iterable

from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import encode_delimited
from darktower.workers.actions import Action, CloseSession, SendSignaling


def send(session: int, message: pb.ServerMessage) -> SendSignaling:
    return SendSignaling(session, encode_delimited(message))


def broadcast(sessions: Iterable[int], message: pb.ServerMessage) -> list[Action]:
    """The same message to each session, serialised once."""
    data = encode_delimited(message)
    return [SendSignaling(session, data) for session in sessions]


def error(session: int, request_id: int, code: pb.ErrorCode, message: str, *, fatal: bool) -> SendSignaling:
    return send(
        session,
        pb.ServerMessage(request_id=request_id, error=pb.Error(code=code, message=message, fatal=fatal)),
    )


def close(session: int, request_id: int, code: pb.ErrorCode, message: str) -> list[Action]:
    """A fatal `Error` (the reply to `request_id`, or 0), then the order to close the session."""
    return [error(session, request_id, code, message, fatal=True), CloseSession(session, code, message)]
