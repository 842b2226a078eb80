"""Receive statistics from hand-made frame sequences: loss, reordering, latency percentiles, damage."""

from __future__ import annotations

from darktower.client.stats import ReceiveStats, SequenceTracker, percentile
from darktower.proto.frame import FrameHeader


def header(group: int, seq: int, capture_us: int = 0, *, keyframe: bool = False) -> FrameHeader:
    return FrameHeader(
        version=1,
        flags=int(keyframe),
        layers=0,
        audio_level=127,
        track_id=1,
        group=group,
        capture_us=capture_us,
        object_seq=seq,
        payload_length=0,
    )


def feed_audio(stats: ReceiveStats, seqs: list[int]) -> None:
    for seq in seqs:
        stats.record("alice", "audio", header(0, seq), ok=True, now_us=0)


def test_audio_counts_gaps_from_the_first_packet_received() -> None:
    stats = ReceiveStats()
    feed_audio(stats, [100, 101, 103, 104, 108])
    alice = stats.track("alice", "audio")
    assert (alice.received, alice.lost, alice.out_of_order) == (5, 4, 0)


def test_a_late_packet_that_fills_a_gap_is_out_of_order_not_lost() -> None:
    stats = ReceiveStats()
    feed_audio(stats, [0, 1, 3, 4, 2, 6, 5])
    alice = stats.track("alice", "audio")
    assert (alice.received, alice.lost, alice.out_of_order) == (7, 0, 2)


def test_a_duplicate_is_neither_lost_nor_out_of_order() -> None:
    stats = ReceiveStats()
    feed_audio(stats, [0, 1, 1, 2])
    alice = stats.track("alice", "audio")
    assert (alice.received, alice.lost, alice.out_of_order) == (4, 0, 0)


def test_video_loss_is_counted_within_each_group_from_its_keyframe() -> None:
    stats = ReceiveStats()
    for group, seq in [(0, 0), (0, 1), (0, 3), (1, 2), (1, 3), (0, 4), (2, 0), (2, 1)]:
        stats.record("bob", "video", header(group, seq), ok=True, now_us=0)
    bob = stats.track("bob", "video")
    assert (bob.received, bob.lost, bob.out_of_order) == (8, 3, 0)


def test_video_reordering_within_a_group_is_counted() -> None:
    stats = ReceiveStats()
    for seq in [0, 2, 1, 3]:
        stats.record("bob", "video", header(5, seq), ok=True, now_us=0)
    bob = stats.track("bob", "video")
    assert (bob.lost, bob.out_of_order) == (0, 1)


def test_publishers_and_kinds_are_counted_apart() -> None:
    stats = ReceiveStats()
    feed_audio(stats, [0, 2])
    stats.record("bob", "audio", header(0, 7), ok=True, now_us=0)
    stats.record("alice", "video", header(0, 0), ok=True, now_us=0)
    assert stats.track("alice", "audio").lost == 1
    assert stats.track("bob", "audio").lost == 0
    assert stats.track("alice", "video").lost == 0
    assert stats.summary()["received"] == {"alice": {"audio": 2, "video": 1}, "bob": {"audio": 1, "video": 0}}


def test_a_huge_gap_is_counted_in_full_and_old_stragglers_change_nothing() -> None:
    tracker = SequenceTracker(first_expected=0)
    assert tracker.add(0) == (0, False)
    assert tracker.add(100_000) == (99_999, False)
    assert tracker.add(99_990) == (-1, True)
    assert tracker.add(5) == (0, False)


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    samples = [ms * 1000 for ms in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([7000], 99) == 7.0
    assert percentile([], 50) is None


def test_latency_is_receive_time_minus_capture_time_over_verified_frames() -> None:
    stats = ReceiveStats()
    for i in range(1, 101):
        stats.record(
            "alice", "audio", header(0, i, capture_us=1_000_000), ok=True, now_us=1_000_000 + i * 1000
        )
    stats.record("alice", "audio", header(0, 101, capture_us=0), ok=False, now_us=10**9)
    assert stats.latency_ms() == {"p50": 50.0, "p99": 99.0}
    assert stats.summary()["corrupt"] == 1
    assert stats.track("alice", "audio").received == 101


def test_join_to_first_media_counts_from_the_first_join() -> None:
    stats = ReceiveStats()
    assert stats.summary()["join_to_first_media_ms"] is None
    stats.joined(1_000_000)
    stats.joined(2_000_000)
    assert stats.summary()["join_to_first_media_ms"] is None
    stats.record("alice", "video", header(3, 0, keyframe=True), ok=True, now_us=1_250_000)
    stats.record("bob", "video", header(1, 0, keyframe=True), ok=True, now_us=1_400_000)
    assert stats.join_to_first_media_ms == 250.0
    first = stats.track("bob", "video").first_frame
    assert first is not None
    assert (first.group, first.object_seq, first.keyframe) == (1, 0, True)


def test_the_summary_has_the_bot_report_shape() -> None:
    stats = ReceiveStats()
    stats.record_malformed()
    assert stats.summary() == {
        "received": {},
        "join_to_first_media_ms": None,
        "latency_ms": {"p50": None, "p99": None},
        "lost": 0,
        "out_of_order": 0,
        "corrupt": 1,
        "unverified": 0,
        "unattributed": 0,
    }
