"""Synthetic media with the sizes and rates of real media, checkable byte for byte by every receiver.

Video runs at 30 frames per second with a keyframe every 2 s (about 25 KB) and delta frames of about 4 KB;
each group of pictures is one `group`, its keyframe `object_seq` 0. Audio runs at 50 packets per second of
about 100 bytes (an Opus packet's size), group 0 with a running packet counter as `object_seq` and an audio
level that follows talk spurts. Frames use the media frame format (docs/FRAME-FORMAT.md) unchanged.

A payload opens with an echo of who sent it and where it belongs (publisher participant id, kind, track,
group, sequence, capture time) followed by filler that is a deterministic function of (publisher, kind,
group, sequence). `verify` rebuilds the whole frame from that echo and compares, so a receiver detects any
changed, missing or misrouted byte without knowing anything about the sender in advance.

Sources are sans-I/O: the caller passes the current time and gets the frames due by then.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from darktower.proto.frame import HEADER_SIZE, FrameError, decode_frame, encode_frame

MediaKind = Literal["audio", "video"]

VIDEO_FPS: Final = 30
KEYFRAME_INTERVAL_S: Final = 2
AUDIO_PACKETS_PER_SECOND: Final = 50
MAX_LAG_US: Final = 500_000
"""A source that falls further behind than this skips the frames it missed, as a live capture would."""

_KEYFRAME_BYTES: Final = (22_500, 27_500)
_DELTA_BYTES: Final = (3_000, 5_000)
_AUDIO_BYTES: Final = (80, 120)
"""Inclusive payload size ranges; the mean of each is the nominal size."""

_MAGIC: Final = b"DTs1"
_KIND_CODES: Final[dict[MediaKind, int]] = {"audio": 1, "video": 2}
_KINDS_BY_CODE: Final[dict[int, MediaKind]] = {code: kind for kind, code in _KIND_CODES.items()}
_PREFIX_HEAD: Final = struct.Struct("!4sBB")
"""Magic, kind code, length of the participant id that follows."""
_PREFIX_TAIL: Final = struct.Struct("!IIIQ")
"""Track id, group, object sequence, capture time (µs)."""
_MIN_FILLER: Final = 16
"""Filler bytes every payload carries at least, so a changed echo always changes the expected filler."""
_TALK_SPURT_PACKETS: Final = 75
"""Audio level pattern: 1.5 s spurts, two of voice and one of near silence in every three."""


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """One encoded frame a source produced, with what the sender needs to place it on the wire."""

    kind: MediaKind
    group: int
    object_seq: int
    capture_us: int
    keyframe: bool
    last_in_group: bool
    """Video: no further frame of this group will follow on the cadence, so its stream can end now."""
    data: bytes


class MediaSource(Protocol):
    """What a publisher drives: frames due at a given time, a keyframe on request, a track id to stamp."""

    kind: MediaKind
    track_id: int

    @property
    def next_due_us(self) -> int: ...

    def due(self, now_us: int) -> list[OutgoingFrame]: ...

    def request_keyframe(self) -> None: ...


def synthetic_frame(
    *, participant_id: str, kind: MediaKind, track_id: int, group: int, object_seq: int, capture_us: int
) -> bytes:
    """The one frame the synthetic publisher `participant_id` sends at (kind, group, object_seq)."""
    pid = participant_id.encode()
    if len(pid) > 255:
        raise FrameError(f"participant id of {len(pid)} bytes is too long for a synthetic payload")
    code = _KIND_CODES[kind]
    prefix = (
        _PREFIX_HEAD.pack(_MAGIC, code, len(pid))
        + pid
        + _PREFIX_TAIL.pack(track_id, group, object_seq, capture_us)
    )
    seed = _seed(pid, code, group, object_seq)
    size = max(_payload_size(seed, kind, object_seq), len(prefix) + _MIN_FILLER)
    filler = hashlib.shake_128(seed).digest(size - len(prefix))
    if kind == "audio":
        level, voice = audio_level(pid, object_seq)
        return encode_frame(
            track_id=track_id,
            group=group,
            object_seq=object_seq,
            capture_us=capture_us,
            payload=prefix + filler,
            level_dbov=level,
            voice_activity=voice,
        )
    return encode_frame(
        track_id=track_id,
        group=group,
        object_seq=object_seq,
        capture_us=capture_us,
        payload=prefix + filler,
        keyframe=object_seq == 0,
    )


def is_synthetic(frame: bytes) -> bool:
    """True when the frame's payload claims to be synthetic (starts with the marker); `verify` then tells
    whether it is intact. Media from real encoders (browsers) is not, and cannot be checked byte for byte."""
    start = HEADER_SIZE
    return frame[start : start + len(_MAGIC)] == _MAGIC


def verify(frame: bytes, participant_id: str | None = None) -> bool:
    """True when `frame` is exactly what a synthetic publisher sent (and that publisher is `participant_id`,
    when given); False for any other bytes, including a frame that does not parse."""
    try:
        _, payload = decode_frame(frame)
    except FrameError:
        return False
    if len(payload) < _PREFIX_HEAD.size:
        return False
    magic, code, pid_length = _PREFIX_HEAD.unpack_from(payload)
    kind = _KINDS_BY_CODE.get(code)
    tail_at = _PREFIX_HEAD.size + pid_length
    if magic != _MAGIC or kind is None or len(payload) < tail_at + _PREFIX_TAIL.size:
        return False
    try:
        pid = bytes(payload[_PREFIX_HEAD.size : tail_at]).decode()
    except UnicodeDecodeError:
        return False
    if participant_id is not None and pid != participant_id:
        return False
    track_id, group, object_seq, capture_us = _PREFIX_TAIL.unpack_from(payload, tail_at)
    expected = synthetic_frame(
        participant_id=pid,
        kind=kind,
        track_id=track_id,
        group=group,
        object_seq=object_seq,
        capture_us=capture_us,
    )
    return expected == frame


def audio_level(pid: bytes, object_seq: int) -> tuple[int, bool]:
    """The (level in -dBov, voice activity) of audio packet `object_seq`: talk spurts, then quiet."""
    phase = pid[0] if pid else 0
    spurt = (object_seq + phase) // _TALK_SPURT_PACKETS
    if spurt % 3 == 2:
        return 90 + object_seq % 30, False
    return 20 + (object_seq * 7 + phase) % 30, True


def _seed(pid: bytes, code: int, group: int, object_seq: int) -> bytes:
    return b"darktower-synthetic\x00" + struct.pack("!BII", code, group, object_seq) + pid


def _payload_size(seed: bytes, kind: MediaKind, object_seq: int) -> int:
    if kind == "audio":
        low, high = _AUDIO_BYTES
    elif object_seq == 0:
        low, high = _KEYFRAME_BYTES
    else:
        low, high = _DELTA_BYTES
    draw = int.from_bytes(hashlib.blake2b(seed, digest_size=4).digest(), "big")
    return low + draw % (high - low + 1)


class _PacedSource:
    """Frame k is due at start + k / rate; a caller that falls behind by more than MAX_LAG_US skips ahead."""

    def __init__(self, participant_id: str, track_id: int, start_us: int, rate: int) -> None:
        self.participant_id = participant_id
        self.track_id = track_id
        self._start_us = start_us
        self._rate = rate
        self._index = 0

    @property
    def next_due_us(self) -> int:
        return self._start_us + self._index * 1_000_000 // self._rate

    def _due_times(self, now_us: int) -> list[int]:
        if now_us - self.next_due_us > MAX_LAG_US:
            self._index = (now_us - MAX_LAG_US - self._start_us) * self._rate // 1_000_000 + 1
        times: list[int] = []
        while (at := self.next_due_us) <= now_us:
            times.append(at)
            self._index += 1
        return times


class VideoSource(_PacedSource):
    """30 fps video in groups of pictures: a keyframe every 2 s, or sooner when `request_keyframe` asks."""

    kind: MediaKind = "video"

    def __init__(
        self,
        participant_id: str,
        track_id: int,
        start_us: int,
        *,
        fps: int = VIDEO_FPS,
        keyframe_interval_s: int = KEYFRAME_INTERVAL_S,
    ) -> None:
        super().__init__(participant_id, track_id, start_us, fps)
        self._group_frames = fps * keyframe_interval_s
        self._group = -1
        self._next_seq = 0
        self._keyframe_wanted = True

    def request_keyframe(self) -> None:
        """The next frame opens a new group (a subscriber joined, or one could not decode)."""
        self._keyframe_wanted = True

    def due(self, now_us: int) -> list[OutgoingFrame]:
        frames: list[OutgoingFrame] = []
        for capture_us in self._due_times(now_us):
            if self._keyframe_wanted or self._next_seq >= self._group_frames:
                self._group += 1
                self._next_seq = 0
                self._keyframe_wanted = False
            seq = self._next_seq
            self._next_seq += 1
            data = synthetic_frame(
                participant_id=self.participant_id,
                kind="video",
                track_id=self.track_id,
                group=self._group,
                object_seq=seq,
                capture_us=capture_us,
            )
            frames.append(
                OutgoingFrame(
                    kind="video",
                    group=self._group,
                    object_seq=seq,
                    capture_us=capture_us,
                    keyframe=seq == 0,
                    last_in_group=self._next_seq >= self._group_frames,
                    data=data,
                )
            )
        return frames


class AudioSource(_PacedSource):
    """50 packets per second of Opus-sized audio, one group, a running packet counter."""

    kind: MediaKind = "audio"

    def __init__(
        self,
        participant_id: str,
        track_id: int,
        start_us: int,
        *,
        packets_per_second: int = AUDIO_PACKETS_PER_SECOND,
    ) -> None:
        super().__init__(participant_id, track_id, start_us, packets_per_second)
        self._seq = 0

    def request_keyframe(self) -> None:
        """Every audio packet decodes on its own: nothing to do."""

    def due(self, now_us: int) -> list[OutgoingFrame]:
        frames: list[OutgoingFrame] = []
        for capture_us in self._due_times(now_us):
            seq = self._seq
            self._seq += 1
            data = synthetic_frame(
                participant_id=self.participant_id,
                kind="audio",
                track_id=self.track_id,
                group=0,
                object_seq=seq,
                capture_us=capture_us,
            )
            frames.append(
                OutgoingFrame(
                    kind="audio",
                    group=0,
                    object_seq=seq,
                    capture_us=capture_us,
                    keyframe=False,
                    last_in_group=False,
                    data=data,
                )
            )
        return frames


def source_for(kind: MediaKind, participant_id: str, track_id: int, start_us: int) -> MediaSource:
    """The default synthetic source of a kind."""
    if kind == "audio":
        return AudioSource(participant_id, track_id, start_us)
    return VideoSource(participant_id, track_id, start_us)
