"""End-to-end encrypted meetings against a real worker and control plane (docs/E2EE.md).

The server's view is tapped where media enters the worker's core (`WorkerCore.datagram_received` and
`media_stream_received`, wrapped for the test only): every byte it could forward. Through that tap the
tests also play a hostile server that alters or replays frames. Every client decrypts every other; nothing
the server saw contains a publisher's plaintext marker; a leaver's keys open nothing sent after the
rotation; tampered and replayed frames are refused and counted, never delivered; an E2EE-required meeting
refuses a client that does not encrypt.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from darktower.client.api import ControlApi, JoinInfo
from darktower.client.backoff import ReconnectPolicy
from darktower.client.e2ee import FrameRefusal
from darktower.client.errors import RequestRefusedError
from darktower.client.keymessages import (
    Hello,
    SealedMediaKey,
    decode_key_message,
    open_media_key,
    wrap_key,
)
from darktower.client.media import MediaKind, synthetic_frame
from darktower.client.meeting import MeetingClient, wall_clock_us
from darktower.client.sframe import SFrameError, SFrameKey, decode_header
from darktower.core.tokens import TokenSigner, load_or_create_signing_key, signing_key_path
from darktower.proto.frame import HEADER_SIZE, FrameHeader, FrameReader, decode_frame
from darktower.workers.core import WorkerCore

if TYPE_CHECKING:
    from conftest import Cluster

TIMEOUT = 20.0
FAST_RECONNECT = ReconnectPolicy(initial_s=0.05, maximum_s=0.5)


class ServerTap:
    """Every media frame that reached the worker's core, by track; `alter` may rewrite an audio datagram
    before the core sees it (a hostile server)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: list[tuple[FrameHeader, bytes]] = []
        self.alter: Callable[[FrameHeader, bytes], bytes] | None = None
        self._readers: dict[tuple[int, int], FrameReader] = {}
        datagram, stream = WorkerCore.datagram_received, WorkerCore.media_stream_received

        def on_datagram(core: WorkerCore, session: int, data: bytes, now_us: int) -> Any:
            header, _ = decode_frame(data)
            if self.alter is not None:
                data = self.alter(header, data)
            self.frames.append((header, data))
            return datagram(core, session, data, now_us)

        def on_stream(
            core: WorkerCore, session: int, stream_id: int, data: bytes, end: bool, now_us: int
        ) -> Any:
            reader = self._readers.setdefault((session, stream_id), FrameReader(1 << 24))
            self.frames += reader.feed(data)
            if end:
                del self._readers[(session, stream_id)]
            return stream(core, session, stream_id, data, end, now_us)

        monkeypatch.setattr(WorkerCore, "datagram_received", on_datagram)
        monkeypatch.setattr(WorkerCore, "media_stream_received", on_stream)

    def of(self, client: MeetingClient) -> list[tuple[FrameHeader, bytes]]:
        """The frames of `client`'s tracks, in arrival order."""
        mine = {t.track_id for t in client.tracks.values() if t.participant_id == client.participant_id}
        return [(header, frame) for header, frame in self.frames if header.track_id in mine]


@pytest.fixture
def tap(monkeypatch: pytest.MonkeyPatch) -> ServerTap:
    return ServerTap(monkeypatch)


def markers(client: MeetingClient) -> list[bytes]:
    """What every synthetic audio and video payload of `client` opens with: magic, kind code, id length,
    participant id (22 bytes or more, so ciphertext matches one by chance with negligible probability)."""
    pid = client.participant_id.encode()
    return [b"DTs1" + bytes((code, len(pid))) + pid for code in (1, 2)]


def decrypts_everyone(clients: list[MeetingClient], minimum: int) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            receiver.stats.track(sender.participant_id, kind).received >= minimum
            for receiver in clients
            for sender in clients
            if sender is not receiver
            for kind in ("audio", "video")
        )

    return check


async def test_three_encrypting_clients_open_each_other_and_the_server_sees_no_plaintext(
    cluster: Cluster, tap: ServerTap
) -> None:
    clients = [await cluster.join("secret", name, e2ee=True) for name in ("alice", "bob", "carol")]
    async with asyncio.timeout(TIMEOUT):
        await clients[0].wait_until(decrypts_everyone(clients, 20))
    for client in clients:
        summary = client.stats.summary()
        assert summary["corrupt"] == 0
        assert summary["unverified"] == 0  # every delivered frame was the publisher's exact plaintext
        assert client.keys is not None
        assert client.keys.decrypted >= 4 * 20
        assert client.keys.refused_frames[FrameRefusal.AUTH] == 0
        assert client.keys.plaintext == 0
    alice, bob, _ = clients
    assert alice.keys is not None
    assert bob.keys is not None
    assert alice.keys.safety_number(bob.participant_id) == bob.keys.safety_number(alice.participant_id)
    assert len(tap.frames) > 200
    for client in clients:
        audio, video = markers(client)
        assert synthetic_frame(**example(client, "audio"))[HEADER_SIZE:].startswith(audio)
        assert synthetic_frame(**example(client, "video"))[HEADER_SIZE:].startswith(video)
        assert not any(audio in frame or video in frame for _, frame in tap.frames), (
            "plaintext reached the server"
        )
        assert all(frame[HEADER_SIZE:][:4] != b"DTs1" for _, frame in tap.of(client))


def example(client: MeetingClient, kind: MediaKind) -> dict[str, Any]:
    pid = client.participant_id
    return {"participant_id": pid, "kind": kind, "track_id": 1, "group": 0, "object_seq": 0, "capture_us": 0}


async def test_after_a_leave_nothing_sent_later_opens_with_any_key_the_leaver_held(
    cluster: Cluster, tap: ServerTap
) -> None:
    alice = await cluster.join("leave", "alice", e2ee=True)
    bob = await cluster.join("leave", "bob", e2ee=True)
    carol = MeetingClient(cluster.api, "leave", "carol", auto_subscribe=True, e2ee=True)
    assert carol.keys is not None
    received: list[tuple[str, bytes]] = []
    receive = carol.keys.receive

    def record(from_id: str, payload: bytes, now_us: int) -> Any:
        received.append((from_id, payload))
        return receive(from_id, payload, now_us)

    carol.keys.receive = record  # type: ignore[method-assign]
    cluster.clients.append(carol)
    await carol.join()
    await carol.publish("audio")
    await carol.publish("video")
    async with asyncio.timeout(TIMEOUT):
        await carol.wait_until(decrypts_everyone([alice, bob, carol], 5))
    held = keys_held(carol, received)
    assert {pid for pid, _ in held} == {alice.participant_id, bob.participant_id}
    before = {client.participant_id: sending_kid(client) for client in (alice, bob)}
    await carol.leave()
    async with asyncio.timeout(TIMEOUT):
        for client in (alice, bob):
            await client.wait_until(lambda c=client: sending_kid(c) > before[c.participant_id])  # type: ignore[misc]
        # Captured after both switched, so sealed after it (a frame is sealed after its capture time).
        switched_us, mark = wall_clock_us(), len(tap.frames)
        senders = {track: client.participant_id for client in (alice, bob) for track in own_tracks(client)}

        def sent_later() -> list[tuple[FrameHeader, bytes]]:
            return [
                (h, f) for h, f in tap.frames[mark:] if h.track_id in senders and h.capture_us >= switched_us
            ]

        await bob.wait_until(lambda: len(sent_later()) > 60)
    later = sent_later()
    assert len(later) > 30
    opened = 0
    for header, frame in later:
        payload = frame[HEADER_SIZE:]
        for _, key in held:
            try:
                key.open(decode_header(payload), payload, frame[:24])
            except SFrameError:
                continue
            opened += 1
        sender = senders[header.track_id]
        assert decode_header(payload).kid not in {key.kid for pid, key in held if pid == sender}
    assert opened == 0
    assert bob.keys is not None
    assert bob.keys.decrypted > 0


def sending_kid(client: MeetingClient) -> int:
    assert client.keys is not None
    kid = client.keys.sending_kid
    assert kid is not None
    return kid


def own_tracks(client: MeetingClient) -> set[int]:
    return {t.track_id for t in client.tracks.values() if t.participant_id == client.participant_id}


def keys_held(client: MeetingClient, received: list[tuple[str, bytes]]) -> list[tuple[str, SFrameKey]]:
    """Every media key `client` was sent, opened independently of its key manager from the key messages
    it received (its identity's ECDH with each sender's HELLO)."""
    assert client.keys is not None
    identity = client.keys.identity
    publics: dict[str, bytes] = {}
    keys: list[tuple[str, SFrameKey]] = []
    for sender, payload in received:
        message = decode_key_message(payload)
        if isinstance(message, Hello):
            publics[sender] = message.public_key
            continue
        assert isinstance(message, SealedMediaKey)
        wrap = wrap_key(identity, publics[sender], publics[sender], identity.public_key)
        key = open_media_key(wrap, sender, client.participant_id, message)
        keys.append((sender, SFrameKey.derive(key.suite, key.kid, key.base_key)))
    return keys


async def test_tampered_and_replayed_frames_are_refused_counted_and_never_delivered(
    cluster: Cluster, tap: ServerTap
) -> None:
    alice = await cluster.join("hostile", "alice", e2ee=True)
    bob = await cluster.join("hostile", "bob", e2ee=True, publish=False)
    assert alice.keys is not None
    assert bob.keys is not None
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: bob.stats.track(alice.participant_id, "audio").received >= 5)
    audio = next(
        t.track_id
        for t in alice.tracks.values()
        if t.participant_id == alice.participant_id and t.kind == "audio"
    )
    tampered = 0

    def flip(header: FrameHeader, data: bytes) -> bytes:
        nonlocal tampered
        if header.track_id != audio or header.object_seq % 5:
            return data
        tampered += 1
        return data[:-1] + bytes((data[-1] ^ 0x01,))

    tap.alter = flip
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: bob.keys is not None and bob.keys.refused_frames[FrameRefusal.AUTH] >= 5)
    tap.alter = None
    assert bob.keys.refused_frames[FrameRefusal.AUTH] <= tampered
    assert bob.stats.summary()["corrupt"] == 0

    old = next(f for h, f in reversed(tap.frames) if h.track_id == audio and h.object_seq % 5)  # intact
    old_kid = decode_header(old[HEADER_SIZE:]).kid
    replays = bob.keys.refused_frames[FrameRefusal.REPLAY]
    tap.alter = replay_once(audio, old)
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(
            lambda: bob.keys is not None and bob.keys.refused_frames[FrameRefusal.REPLAY] > replays
        )
    await cluster.join("hostile", "carol", e2ee=True, publish=False)  # alice rotates
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(
            lambda: bob.keys is not None and bob.keys.kids_from(alice.participant_id) == [old_kid + 1]
        )
    tap.alter = replay_once(audio, old)
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(
            lambda: bob.keys is not None and bob.keys.refused_frames[FrameRefusal.RETIRED] > 0
        )
    assert bob.stats.summary()["corrupt"] == 0


def replay_once(track_id: int, old: bytes) -> Callable[[FrameHeader, bytes], bytes]:
    """A hostile server's alteration: the next audio datagram of `track_id` is replaced by `old`."""
    done = False

    def alter(header: FrameHeader, data: bytes) -> bytes:
        nonlocal done
        if done or header.track_id != track_id:
            return data
        done = True
        return old

    return alter


class RequiredTokens(ControlApi):
    """The control API, with every join token re-signed for an E2EE-required meeting."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster.http_url)
        key_path = signing_key_path(cluster.config.server.data_dir, cluster.config.auth.signing_key)
        self._signer = TokenSigner(load_or_create_signing_key(key_path), cluster.config.auth.issuer, 60)

    async def join(
        self, meeting_id: str, display_name: str, *, publish: bool = True, subscribe: bool = True
    ) -> JoinInfo:
        info = await super().join(meeting_id, display_name, publish=publish, subscribe=subscribe)
        token, _ = self._signer.sign(
            meeting_id=meeting_id,
            participant_id=info.participant_id,
            display_name=display_name,
            can_publish=publish,
            can_subscribe=subscribe,
            now=info.expires_at.timestamp() - 60,
            e2ee_required=True,
        )
        return dataclasses.replace(info, token=token)


async def test_an_e2ee_required_meeting_refuses_a_plaintext_client(cluster: Cluster) -> None:
    await cluster.api.ensure_meeting("required")
    async with RequiredTokens(cluster) as api:
        plain = MeetingClient(api, "required", "plain")
        with pytest.raises(RequestRefusedError) as refused:
            await plain.join()
        assert refused.value.code == "e2ee_required"
        assert refused.value.fatal
        encrypting = MeetingClient(api, "required", "encrypting", e2ee=True)
        cluster.clients.append(encrypting)
        await encrypting.join()
        assert encrypting.connected


async def test_clients_that_reconnect_keep_their_identity_and_decrypt_each_other_again(
    cluster: Cluster,
) -> None:
    alice = await cluster.join("again", "alice", e2ee=True, reconnect=FAST_RECONNECT)
    bob = await cluster.join("again", "bob", e2ee=True, reconnect=FAST_RECONNECT)
    assert alice.keys is not None
    assert bob.keys is not None
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(decrypts_everyone([alice, bob], 5))
    identities = (alice.keys.identity.public_key, bob.keys.identity.public_key)
    number = alice.keys.safety_number(bob.participant_id)
    kid = sending_kid(alice)
    await cluster.restart_worker()
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(lambda: alice.reconnects == 1 and alice.connected)
        await bob.wait_until(lambda: bob.reconnects == 1 and bob.connected)
        await alice.wait_until(decrypts_everyone([alice, bob], 5))
    assert (alice.keys.identity.public_key, bob.keys.identity.public_key) == identities
    assert alice.keys.safety_number(bob.participant_id) == number
    assert sending_kid(alice) > kid
    assert alice.stats.summary()["corrupt"] == bob.stats.summary()["corrupt"] == 0
