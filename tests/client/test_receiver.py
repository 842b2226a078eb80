"""Received media is attributed to its publisher, verified byte for byte and counted, whatever the chunking."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from darktower.client.media import VideoSource, synthetic_frame
from darktower.client.receiver import MediaReceiver
from darktower.client.roster import RemoteTrack
from darktower.client.stats import ReceiveStats
from darktower.proto.frame import FrameHeader, encode_frame

TRACKS = {
    1: RemoteTrack(1, "alice", "audio", "opus", "microphone"),
    2: RemoteTrack(2, "alice", "video", "vp8", "camera"),
}
START = 1_700_000_000_000_000


def audio(seq: int, track_id: int = 1, pid: str = "alice") -> bytes:
    return synthetic_frame(
        participant_id=pid, kind="audio", track_id=track_id, group=0, object_seq=seq, capture_us=START
    )


def video_group() -> bytes:
    source = VideoSource("alice", 2, START)
    return b"".join(f.data for k in range(21) for f in source.due(START + k * 1_000_000 // 30))


def test_a_datagram_is_attributed_verified_and_counted() -> None:
    stats = ReceiveStats()
    seen: list[tuple[str, int, bool]] = []

    def on_frame(track: RemoteTrack, header: FrameHeader, data: bytes, ok: bool) -> None:
        seen.append((track.participant_id, header.object_seq, ok))

    receiver = MediaReceiver(TRACKS, stats, on_frame=on_frame)
    assert receiver.datagram(audio(0), START + 5000) == 1
    assert receiver.datagram(audio(1), START + 7000) == 1
    alice = stats.track("alice", "audio")
    assert (alice.received, alice.corrupt, alice.lost) == (2, 0, 0)
    assert alice.latencies_us == [5000, 7000]
    assert seen == [("alice", 0, True), ("alice", 1, True)]


def test_damaged_misattributed_unparsable_or_unknown_frames_are_counted_as_such() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    damaged = bytearray(audio(0))
    damaged[-1] ^= 0xFF
    assert receiver.datagram(bytes(damaged), START) == 1
    assert receiver.datagram(audio(1, pid="mallory"), START) == 1
    assert stats.track("alice", "audio").corrupt == 2
    assert receiver.datagram(audio(2, track_id=99), START) == 0
    assert receiver.datagram(b"\x01\x00", START) == 0
    assert (stats.malformed, stats.unattributed) == (1, 1)
    assert stats.summary()["corrupt"] == 3


def test_real_encoder_output_is_unverified_not_corrupt() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    browser_frame = encode_frame(track_id=1, group=0, object_seq=7, capture_us=START, payload=b"opus packet")
    assert receiver.datagram(browser_frame, START + 2000) == 1
    alice = stats.track("alice", "audio")
    assert (alice.received, alice.unverified, alice.corrupt) == (1, 1, 0)
    assert alice.latencies_us == [2000]
    assert stats.summary()["unverified"] == 1


def test_without_verification_every_parsed_frame_counts_as_good() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats, verify_media=False)
    receiver.datagram(audio(0, pid="someone-else"), START)
    assert stats.track("alice", "audio").corrupt == 0


@given(st.lists(st.integers(1, 40_000), max_size=30))
def test_a_video_stream_in_any_chunking_yields_every_frame_in_order(cuts: list[int]) -> None:
    stream = video_group()
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    positions = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    delivered = 0
    for start, end in itertools.pairwise(positions):
        delivered += receiver.stream_data(7, stream[start:end], end_stream=end == len(stream), now_us=START)
    video = stats.track("alice", "video")
    assert delivered == video.received == 21
    assert (video.corrupt, video.lost, video.out_of_order) == (0, 0, 0)
    assert video.first_frame is not None
    assert (video.first_frame.object_seq, video.first_frame.keyframe) == (0, True)
    assert receiver.open_streams == 0


def test_a_malformed_stream_is_counted_once_and_ignored_until_it_ends() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    assert receiver.stream_data(3, b"\x09" * 40, end_stream=False, now_us=START) == 0
    assert receiver.stream_data(3, video_group(), end_stream=False, now_us=START) == 0
    assert receiver.open_streams == 1
    assert receiver.stream_data(3, b"", end_stream=True, now_us=START) == 0
    assert receiver.open_streams == 0
    assert stats.malformed == 1


def test_a_stream_that_ends_inside_a_frame_is_malformed() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    group = video_group()
    assert receiver.stream_data(5, group[:-10], end_stream=True, now_us=START) == 20
    assert stats.malformed == 1
    assert receiver.open_streams == 0


def test_a_reset_stream_is_dropped_without_counting_damage() -> None:
    stats = ReceiveStats()
    receiver = MediaReceiver(TRACKS, stats)
    group = video_group()
    assert receiver.stream_data(5, group[:-10], end_stream=False, now_us=START) == 20
    receiver.stream_reset(5)
    assert receiver.open_streams == 0
    assert stats.summary()["corrupt"] == 0


def test_an_opener_sees_every_attributed_frame_first_and_what_it_refuses_is_dropped_uncounted() -> None:
    stats = ReceiveStats()
    seen: list[int] = []
    opened: list[tuple[str, int]] = []

    def opener(track: RemoteTrack, frame: bytes, now_us: int) -> bytes | None:
        opened.append((track.participant_id, now_us))
        return None if frame == sealed_refused else plain

    plain, sealed, sealed_refused = audio(0), b"\x01" + audio(0)[1:24] + b"\x00\x00\x00\x02zz", audio(1)
    receiver = MediaReceiver(TRACKS, stats, opener=opener, on_frame=lambda t, h, d, ok: seen.append(len(d)))
    assert receiver.datagram(sealed, START) == 1
    assert receiver.datagram(sealed_refused, START + 1) == 0
    assert receiver.datagram(audio(2, track_id=99), START + 2) == 0  # unattributed: never opened
    assert opened == [("alice", START), ("alice", START + 1)]
    assert seen == [len(plain)]
    assert stats.track("alice", "audio").received == 1
    assert stats.track("alice", "audio").corrupt == 0
    assert stats.unattributed == 1
