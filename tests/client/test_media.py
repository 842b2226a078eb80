"""Synthetic media: real media's sizes, rates and keyframe cadence from a given clock, and frames that a
receiver verifies byte for byte (any single changed byte is caught)."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from darktower.client.media import (
    MAX_LAG_US,
    AudioSource,
    MediaKind,
    OutgoingFrame,
    VideoSource,
    synthetic_frame,
    verify,
)
from darktower.proto.frame import HEADER_SIZE, MAX_U32, decode_frame

START = 1_700_000_000_000_000
SECOND = 1_000_000


def run(source: VideoSource | AudioSource, until_us: int, step_us: int = 10_000) -> list[OutgoingFrame]:
    frames: list[OutgoingFrame] = []
    now = START
    while now < until_us:
        frames += source.due(now)
        now += step_us
    frames += source.due(until_us)
    return frames


def test_video_is_30_fps_with_a_keyframe_group_every_2_seconds() -> None:
    source = VideoSource("alice", 7, START)
    frames = run(source, START + 10 * SECOND - 1)
    assert len(frames) == 300
    assert [f.capture_us for f in frames] == [START + k * SECOND // 30 for k in range(300)]
    assert [(f.group, f.object_seq) for f in frames] == [(k // 60, k % 60) for k in range(300)]
    assert [f.keyframe for f in frames] == [k % 60 == 0 for k in range(300)]
    assert [f.last_in_group for f in frames] == [k % 60 == 59 for k in range(300)]
    assert source.next_due_us == START + 10 * SECOND


def test_video_frame_sizes_are_those_of_real_video() -> None:
    frames = run(VideoSource("alice", 7, START), START + 60 * SECOND - 1)
    key = [len(f.data) - HEADER_SIZE for f in frames if f.keyframe]
    delta = [len(f.data) - HEADER_SIZE for f in frames if not f.keyframe]
    assert len(key) == 30
    assert all(22_500 <= n <= 27_500 for n in key)
    assert all(3_000 <= n <= 5_000 for n in delta)
    assert 24_000 <= statistics.mean(key) <= 26_000
    assert 3_800 <= statistics.mean(delta) <= 4_200


def test_every_frame_carries_its_header_fields() -> None:
    for frame in run(VideoSource("alice", 7, START), START + 3 * SECOND):
        header, _ = decode_frame(frame.data)
        assert (header.track_id, header.group, header.object_seq) == (7, frame.group, frame.object_seq)
        assert header.capture_us == frame.capture_us
        assert header.keyframe == frame.keyframe
        assert header.level_dbov == 127


def test_a_keyframe_request_opens_a_new_group_and_restarts_the_cadence() -> None:
    source = VideoSource("alice", 7, START)
    first = source.due(START + 10 * SECOND // 30)
    assert [(f.group, f.object_seq) for f in first] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 5),
        (0, 6),
        (0, 7),
        (0, 8),
        (0, 9),
        (0, 10),
    ]
    source.request_keyframe()
    source.request_keyframe()
    later = run(source, START + 3 * SECOND)
    assert (later[0].group, later[0].object_seq, later[0].keyframe) == (1, 0, True)
    assert [f.object_seq for f in later[:60]] == list(range(60))
    assert (later[60].group, later[60].object_seq) == (2, 0)


def test_a_source_that_falls_behind_skips_what_it_missed() -> None:
    source = VideoSource("alice", 7, START)
    assert len(source.due(START)) == 1
    late = source.due(START + 5 * SECOND)
    assert all(f.capture_us > START + 5 * SECOND - MAX_LAG_US for f in late)
    assert len(late) == 15
    assert [f.object_seq for f in late] == list(range(1, 16))
    assert source.due(START + 5 * SECOND) == []


def test_audio_is_50_packets_per_second_of_opus_size_with_a_varying_level() -> None:
    source = AudioSource("bob", 3, START)
    frames = run(source, START + 10 * SECOND - 1)
    assert len(frames) == 500
    assert [f.capture_us for f in frames] == [START + k * 20_000 for k in range(500)]
    assert [(f.group, f.object_seq) for f in frames] == [(0, k) for k in range(500)]
    sizes = [len(f.data) - HEADER_SIZE for f in frames]
    assert all(80 <= n <= 120 for n in sizes)
    assert 95 <= statistics.mean(sizes) <= 105
    headers = [decode_frame(f.data)[0] for f in frames]
    assert not any(h.keyframe for h in headers)
    assert len({h.level_dbov for h in headers}) > 10
    assert {h.voice_activity for h in headers} == {True, False}


def test_a_participant_id_too_long_for_the_audio_size_still_makes_valid_frames() -> None:
    pid = "p" * 200
    frame = synthetic_frame(participant_id=pid, kind="audio", track_id=1, group=0, object_seq=0, capture_us=0)
    assert verify(frame, pid)


def test_payloads_are_deterministic_per_publisher_and_position() -> None:
    def make(pid: str, seq: int) -> bytes:
        return synthetic_frame(
            participant_id=pid, kind="video", track_id=1, group=2, object_seq=seq, capture_us=5
        )

    assert make("alice", 3) == make("alice", 3)
    assert make("alice", 3)[HEADER_SIZE + 40 :] != make("bob", 3)[HEADER_SIZE + 40 :]
    assert make("alice", 3)[HEADER_SIZE + 40 :] != make("alice", 4)[HEADER_SIZE + 40 :]


kinds: st.SearchStrategy[MediaKind] = st.sampled_from(["audio", "video"])
frame_fields = st.fixed_dictionaries(
    {
        "participant_id": st.text(min_size=1, max_size=40),
        "kind": kinds,
        "track_id": st.integers(0, MAX_U32),
        "group": st.integers(0, MAX_U32),
        "object_seq": st.integers(0, 200),
        "capture_us": st.integers(0, 2**63),
    }
)


@given(frame_fields)
def test_verify_accepts_every_generated_frame(fields: dict[str, object]) -> None:
    frame = synthetic_frame(**fields)  # type: ignore[arg-type]
    assert verify(frame)
    assert verify(frame, str(fields["participant_id"]))
    assert not verify(frame, str(fields["participant_id"]) + "x")


@given(frame_fields, st.data())
def test_verify_rejects_any_single_corrupted_byte(fields: dict[str, object], data: st.DataObject) -> None:
    frame = bytearray(synthetic_frame(**fields))  # type: ignore[arg-type]
    index = data.draw(st.integers(0, len(frame) - 1), label="index")
    frame[index] ^= data.draw(st.integers(1, 255), label="xor")
    assert not verify(bytes(frame))


@given(frame_fields, st.data())
def test_verify_rejects_truncated_or_extended_frames(fields: dict[str, object], data: st.DataObject) -> None:
    frame = synthetic_frame(**fields)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(frame) - 1), label="cut")
    assert not verify(frame[:cut])
    assert not verify(frame + data.draw(st.binary(min_size=1, max_size=8), label="extra"))
