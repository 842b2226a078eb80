"""`ClusterCore`: three workers' sans-I/O cores wired through in-memory stand-ins for their rings.

`Cluster` plays every worker's adapter and every client: it carries out each core's actions (as
`conftest.World` does for one worker), keeps what each core writes into its control and media rings, and
delivers those records to every other core in ring order, the way the readers in `workers/server.py` do.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.core.config import LimitsConfig
from darktower.core.tokens import TokenSigner, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import encode_frame
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.actions import CloseSession, EndVideoGroup, SendDatagram, SendSignaling, SendVideo
from darktower.workers.cluster_core import ClusterCore
from darktower.workers.cluster_records import (
    MEDIA_HEADER,
    ClusterAction,
    Deliver,
    RecordError,
    WriteControl,
    WriteMedia,
    cluster_session,
    decode_control,
    encode_control,
    worker_of,
)
from darktower.workers.shard import owner_index

T0_US = 1_700_000_000 * 1_000_000
AUDIO = pb.TRACK_KIND_AUDIO
VIDEO = pb.TRACK_KIND_VIDEO
WORKERS = 3

Peer = tuple[int, int]
"""(worker, the worker's local session number)."""


def meeting_owned_by(worker: int) -> str:
    return next(m for m in (f"meeting-{i}" for i in itertools.count()) if owner_index(m, WORKERS) == worker)


class Cluster:
    def __init__(self, signer: TokenSigner, verifier: TokenVerifier, limits: LimitsConfig) -> None:
        self.signer, self.verifier, self.limits = signer, verifier, limits
        self.now_us = T0_US
        self.cores = [self._core(k, k + 1) for k in range(WORKERS)]
        self.control: list[list[bytes]] = [[] for _ in range(WORKERS)]
        self.media: list[list[bytes]] = [[] for _ in range(WORKERS)]
        """Everything each worker wrote into its rings, in order."""
        self.read: dict[tuple[int, int, str], int] = defaultdict(int)
        """(reader, writer, ring) -> how many records the reader has read."""
        self.media_written = [0] * WORKERS
        self.inbox: dict[Peer, list[pb.ServerMessage]] = defaultdict(list)
        self.datagrams: dict[Peer, list[bytes]] = defaultdict(list)
        self.video: dict[Peer, list[list[bytes]]] = defaultdict(list)
        """Per subscriber, the frames of each video stream the adapter opened, stream by stream."""
        self.closed: dict[Peer, CloseSession] = {}
        self._readers: dict[Peer, DelimitedReader] = {}
        self._next_session = itertools.count(1)
        self._next_request = itertools.count(1)
        self.next_stream = itertools.count(2, 4)

    def _core(self, index: int, incarnation: int) -> ClusterCore:
        return ClusterCore(
            index=index, workers=WORKERS, incarnation=incarnation, verifier=self.verifier, limits=self.limits
        )

    # --- the adapters ---------------------------------------------------------------------------------

    def run(self, worker: int, actions: list[ClusterAction]) -> None:
        for action in actions:
            if isinstance(action, WriteControl):
                self.control[worker].append(action.data)
            elif isinstance(action, WriteMedia):
                self.media[worker].append(action.header + action.frame)
                self.media_written[worker] += 1
            elif isinstance(action, SendSignaling):
                for body in self._readers[worker, action.session].feed(action.data):
                    self.inbox[worker, action.session].append(parse_server_message(body))
            elif isinstance(action, SendDatagram):
                assert action.sessions, "fan-out to nobody"
                for session in action.sessions:
                    self.datagrams[worker, session].append(bytes(action.data))
            elif isinstance(action, SendVideo):
                for session in action.sessions:
                    streams = self.video[worker, session]
                    if action.starts_group:
                        streams.append([])
                    streams[-1].append(bytes(action.data))
            elif isinstance(action, CloseSession):
                self.closed[worker, action.session] = action
            else:
                assert isinstance(action, EndVideoGroup)

    def act(self, worker: int, actions: list[ClusterAction]) -> None:
        """What a worker's core returned for an input: carried out, and its records read by the others."""
        self.run(worker, actions)
        self.pump()

    def pump(self) -> None:
        """Every reader reads every other worker's rings, each in order, until nothing new was written."""
        progress = True
        while progress:
            progress = False
            for reader, writer in itertools.permutations(range(WORKERS), 2):
                core = self.cores[reader]
                while (done := self.read[reader, writer, "control"]) < len(self.control[writer]):
                    self.read[reader, writer, "control"] = done + 1
                    record = decode_control(self.control[writer][done])
                    self.run(reader, core.control_record(writer, record, self.now_us))
                    progress = True
                while (done := self.read[reader, writer, "media"]) < len(self.media[writer]):
                    self.read[reader, writer, "media"] = done + 1
                    self.run(reader, core.media_record(memoryview(self.media[writer][done])))
                    progress = True

    def restart(self, worker: int, incarnation: int) -> None:
        """kill -9 and restart: the core's state is gone; sessions it had are gone too; it says Hello."""
        for peer in [p for p in self._readers if p[0] == worker]:
            del self._readers[peer]
        self.cores[worker] = core = self._core(worker, incarnation)
        self.act(worker, core.start(self.now_us))

    # --- clients ----------------------------------------------------------------------------------------

    def open(self, worker: int, meeting_id: str) -> Peer:
        peer = (worker, next(self._next_session))
        self._readers[peer] = DelimitedReader(1 << 24)
        self.act(worker, self.cores[worker].session_opened(peer[1], meeting_id, self.now_us))
        return peer

    def request(self, peer: Peer, message: pb.ClientMessage) -> pb.ServerMessage:
        message.request_id = next(self._next_request)
        worker, session = peer
        self.act(
            worker, self.cores[worker].signaling_received(session, encode_delimited(message), self.now_us)
        )
        replies = [m for m in self.inbox[peer] if m.request_id == message.request_id]
        assert len(replies) == 1, f"expected one reply to {message}, got {replies}"
        self.inbox[peer].remove(replies[0])
        return replies[0]

    def join(self, worker: int, meeting_id: str, participant_id: str) -> tuple[Peer, pb.JoinResponse]:
        peer = self.open(worker, meeting_id)
        token, _ = self.signer.sign(
            meeting_id=meeting_id,
            participant_id=participant_id,
            display_name=participant_id.title(),
            can_publish=True,
            can_subscribe=True,
            now=self.now_us / 1_000_000,
        )
        reply = self.request(peer, pb.ClientMessage(join=pb.Join(token=token)))
        assert reply.WhichOneof("body") == "join_response", reply
        return peer, reply.join_response

    def publish(self, peer: Peer, kind: pb.TrackKind) -> int:
        codec = "opus" if kind == AUDIO else "vp8"
        reply = self.request(peer, pb.ClientMessage(publish=pb.PublishTrack(kind=kind, codec=codec)))
        assert reply.WhichOneof("body") == "publish_response", reply
        return reply.publish_response.track.track_id

    def subscribe(self, peer: Peer, track_id: int) -> None:
        reply = self.request(peer, pb.ClientMessage(subscribe=pb.Subscribe(track_id=track_id)))
        assert reply.WhichOneof("body") == "ack", reply

    def send_group(self, peer: Peer, track_id: int, group: int, frames: int) -> list[bytes]:
        """A whole video group on a new stream; the frames sent."""
        stream = next(self.next_stream)
        sent = [video_frame(track_id, group, seq) for seq in range(frames)]
        worker, session = peer
        for index, frame in enumerate(sent):
            end = index == frames - 1
            self.act(
                worker, self.cores[worker].media_stream_received(session, stream, frame, end, self.now_us)
            )
        return sent

    def events(self, peer: Peer) -> list[str]:
        """The bodies of the server-initiated messages the peer got since the last call."""
        received, self.inbox[peer] = self.inbox[peer], []
        return [m.WhichOneof("body") or "" for m in received]


def video_frame(track_id: int, group: int, seq: int) -> bytes:
    payload = f"video {track_id}/{group}/{seq}".encode()
    return encode_frame(
        track_id=track_id,
        group=group,
        object_seq=seq,
        capture_us=T0_US + seq,
        payload=payload,
        keyframe=seq == 0,
    )


def audio_frame(track_id: int, seq: int) -> bytes:
    return encode_frame(
        track_id=track_id, group=0, object_seq=seq, capture_us=T0_US + seq, payload=b"opus%d" % seq
    )


@pytest.fixture
def cluster(token_keys: tuple[TokenSigner, TokenVerifier]) -> Cluster:
    signer, verifier = token_keys
    return Cluster(signer, verifier, LimitsConfig())


def test_participants_on_three_workers_are_one_meeting(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, joined = cluster.join(2, meeting, "bob")
    assert [p.participant_id for p in joined.roster] == ["alice"]
    carol, joined = cluster.join(0, meeting, "carol")
    assert [p.participant_id for p in joined.roster] == ["alice", "bob"]
    assert cluster.events(alice) == ["participant_joined", "participant_joined"]
    assert cluster.events(bob) == ["participant_joined"]
    assert cluster.cores[0].dump()["meetings"] == {
        meeting: {"participants": ["alice", "bob", "carol"], "tracks": 0}
    }
    assert cluster.cores[1].dump()["meetings"] == {}
    cluster.act(2, cluster.cores[2].session_closed(bob[1], cluster.now_us))
    assert cluster.events(alice) == ["participant_left"]
    assert cluster.events(carol) == ["participant_left"]


def test_video_is_written_once_and_every_subscriber_starts_at_a_keyframe(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    subscribers = [
        cluster.join(worker, meeting, name)[0] for worker, name in [(0, "carol"), (1, "dave"), (2, "bob")]
    ]
    track = cluster.publish(alice, VIDEO)
    for peer in subscribers:
        cluster.subscribe(peer, track)
    assert "keyframe_request" in cluster.events(alice)
    group0 = cluster.send_group(alice, track, 0, 3)
    for peer in subscribers:
        assert cluster.video[peer] == [group0]
    assert cluster.media_written[1] == 4, "three frames and the end of the group, each written once"
    late, _ = cluster.join(2, meeting, "erin")
    cluster.subscribe(late, track)
    stream = next(cluster.next_stream)
    cluster.act(
        1, cluster.cores[1].media_stream_received(alice[1], stream, video_frame(track, 1, 0), False, 0)
    )
    cluster.subscribe(cluster.join(0, meeting, "fay")[0], track)
    cluster.act(
        1, cluster.cores[1].media_stream_received(alice[1], stream, video_frame(track, 1, 1), True, 0)
    )
    assert cluster.video[late] == [[video_frame(track, 1, 0), video_frame(track, 1, 1)]]
    fay = (0, max(s for w, s in cluster._readers if w == 0))
    assert cluster.video[fay] == [], "a subscriber that came mid-group waits for the next keyframe"
    group2 = cluster.send_group(alice, track, 2, 2)
    assert cluster.video[fay] == [group2]


def test_audio_reaches_subscribers_on_every_worker(cluster: Cluster) -> None:
    meeting = meeting_owned_by(2)
    alice, _ = cluster.join(0, meeting, "alice")
    bob, _ = cluster.join(1, meeting, "bob")
    carol, _ = cluster.join(0, meeting, "carol")
    track = cluster.publish(alice, AUDIO)
    cluster.subscribe(bob, track)
    cluster.subscribe(carol, track)
    frames = [audio_frame(track, seq) for seq in range(5)]
    for frame in frames:
        cluster.act(0, cluster.cores[0].datagram_received(alice[1], frame, cluster.now_us))
    assert cluster.datagrams[bob] == frames
    assert cluster.datagrams[carol] == frames
    assert cluster.media_written[0] == 5


def test_a_ring_gap_holds_video_until_the_next_keyframe_and_asks_the_publisher_for_one(
    cluster: Cluster,
) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, _ = cluster.join(2, meeting, "bob")
    track = cluster.publish(alice, VIDEO)
    cluster.subscribe(bob, track)
    cluster.events(alice)
    stream = next(cluster.next_stream)
    core = cluster.cores[1]
    cluster.act(1, core.media_stream_received(alice[1], stream, video_frame(track, 0, 0), False, 0))
    cluster.now_us += 2_000_000
    cluster.act(2, cluster.cores[2].media_gap(1, cluster.now_us))
    assert cluster.events(alice) == ["keyframe_request"], "the request reached the publisher's worker"
    cluster.act(1, core.media_stream_received(alice[1], stream, video_frame(track, 0, 1), True, 0))
    assert cluster.video[bob] == [[video_frame(track, 0, 0)]]
    assert cluster.cores[2].dump()["cluster"]["ring_gaps"] == 1
    group1 = cluster.send_group(alice, track, 1, 2)
    assert cluster.video[bob][-1] == group1


def test_bad_frames_of_a_publisher_are_refused_at_its_worker(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    for seq in range(cluster.limits.malformed_input_tolerance):
        cluster.act(1, cluster.cores[1].datagram_received(alice[1], audio_frame(99, seq), 0))
    assert cluster.events(alice) == ["error"] * cluster.limits.malformed_input_tolerance
    cluster.act(1, cluster.cores[1].datagram_received(alice[1], b"\x07", 0))
    assert cluster.closed[alice].code == pb.ERROR_CODE_BAD_FRAME


def test_a_restarted_owner_is_rebuilt_from_its_edges_keeping_track_ids(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, _ = cluster.join(2, meeting, "bob")
    carol, _ = cluster.join(0, meeting, "carol")
    video = cluster.publish(alice, VIDEO)
    carols = cluster.publish(carol, AUDIO)
    cluster.subscribe(bob, video)
    cluster.subscribe(bob, carols)
    group0 = cluster.send_group(alice, video, 0, 2)
    cluster.events(alice)
    cluster.events(bob)

    cluster.restart(0, incarnation=100)
    assert cluster.events(bob) == ["track_unpublished", "participant_left"]
    assert cluster.events(alice) == ["track_unpublished", "participant_left"]
    assert cluster.cores[0].dump()["meetings"] == {meeting: {"participants": ["alice", "bob"], "tracks": 1}}
    group1 = cluster.send_group(alice, video, 1, 2)
    assert cluster.video[bob] == [group0, group1], "media between surviving workers did not stop"

    carol, joined = cluster.join(0, meeting, "carol")
    assert [t.track_id for t in joined.tracks] == [video]
    assert cluster.publish(carol, AUDIO) > carols, "track ids are never given twice"
    cluster.subscribe(carol, video)
    cluster.request(bob, pb.ClientMessage(unsubscribe=pb.Unsubscribe(track_id=video)))
    group2 = cluster.send_group(alice, video, 2, 2)
    assert cluster.video[bob] == [group0, group1]
    assert cluster.video[carol] == [group2]


def test_sessions_of_a_restarted_edge_leave_their_meetings(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    cluster.join(2, meeting, "bob")
    cluster.events(alice)
    cluster.restart(2, incarnation=200)
    assert cluster.events(alice) == ["participant_left"]
    bob, joined = cluster.join(2, meeting, "bob")
    assert [p.participant_id for p in joined.roster] == ["alice"]
    assert worker_of(cluster.cores[2].cluster_id(bob[1])) == 2


def test_records_that_are_not_records_are_refused(cluster: Cluster) -> None:
    with pytest.raises(RecordError):
        decode_control(b"\x93\x01\x02")
    with pytest.raises(RecordError):
        cluster.cores[0].media_record(memoryview(b"short"))
    assert cluster_session(3, 5, 7) != cluster_session(3, 6, 7)


def test_records_for_another_worker_are_ignored(cluster: Cluster) -> None:
    actions: list[Any] = cluster.cores[1].control_record(0, decode_control(_deliver_to(2)), 0)
    assert actions == []


def _deliver_to(worker: int) -> bytes:
    return encode_control(Deliver(worker, cluster_session(worker, 1, 1), b"x"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_in_a_control_ring_decode_to_a_record_or_are_refused(data: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode_control(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.tuples(
        st.sampled_from([0, 1 << 63]),
        st.integers(0, 2**64 - 1),
        st.integers(0, 5),
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
    ),
    frame=st.binary(max_size=64),
)
def test_any_media_record_is_forwarded_or_ignored_never_raised(
    cluster: Cluster, header: tuple[int, int, int, int, int], frame: bytes
) -> None:
    publisher, stream, track_id, group, flags = header
    core = cluster.cores[2]
    record = MEDIA_HEADER.pack(publisher or cluster.cores[1].cluster_id(1), stream, track_id, group, flags)
    for action in core.media_record(memoryview(record + frame)):
        assert isinstance(action, SendDatagram | SendVideo | EndVideoGroup)


def test_a_member_whose_session_closed_while_its_owner_was_down_leaves_on_rebuild(cluster: Cluster) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, _ = cluster.join(2, meeting, "bob")
    cluster.join(2, meeting, "carol")
    cluster.events(alice)
    # Worker 0 dies; bob's transport closes meanwhile, and the record telling worker 0 is lost with it.
    carols_worker = cluster.cores[2]
    carols_worker.session_closed(bob[1], cluster.now_us)
    cluster.restart(0, incarnation=300)
    assert cluster.events(alice) == ["participant_left"]
    assert cluster.cores[0].dump()["meetings"] == {meeting: {"participants": ["alice", "carol"], "tracks": 0}}


def test_lost_control_records_close_the_sessions_they_concerned(cluster: Cluster) -> None:
    meeting, other = meeting_owned_by(0), meeting_owned_by(1)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, _ = cluster.join(2, meeting, "bob")
    carol, _ = cluster.join(2, other, "carol")
    # Worker 1 missed records of worker 0: its sessions in worker 0's meetings are closed...
    cluster.act(1, cluster.cores[1].control_gap(0))
    assert set(cluster.closed) == {alice}
    # ...and worker 0 (the owner) closes, through worker 2, the sessions of worker 2 it may have missed.
    cluster.act(0, cluster.cores[0].control_gap(2))
    assert set(cluster.closed) == {alice, bob}
    assert cluster.closed[bob].code == pb.ERROR_CODE_INTERNAL
    assert carol not in cluster.closed


def test_a_held_back_keyframe_request_for_a_remote_publisher_goes_out_on_a_later_tick(
    cluster: Cluster,
) -> None:
    meeting = meeting_owned_by(0)
    alice, _ = cluster.join(1, meeting, "alice")
    bob, _ = cluster.join(2, meeting, "bob")
    carol, _ = cluster.join(2, meeting, "carol")
    track = cluster.publish(alice, VIDEO)
    cluster.events(alice)
    cluster.subscribe(bob, track)
    assert cluster.events(alice) == ["keyframe_request"]
    cluster.subscribe(carol, track)
    assert cluster.events(alice) == [], "held back: one per second per track"
    cluster.now_us += 500_000
    cluster.act(0, cluster.cores[0].tick(cluster.now_us))
    assert cluster.events(alice) == []
    cluster.now_us += 600_000
    cluster.act(0, cluster.cores[0].tick(cluster.now_us))
    assert cluster.events(alice) == ["keyframe_request"]
    cluster.act(0, cluster.cores[0].tick(cluster.now_us + 2_000_000))
    assert cluster.events(alice) == [], "owed once, sent once"
