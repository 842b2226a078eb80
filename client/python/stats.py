"""What a receiver measured, per remote publisher and media kind: counts, loss, reordering, latency, damage.

Loss is a gap in a sequence: for video, in `object_seq` within one group (every forwarded group starts at
its keyframe, 0); for audio, in the running packet counter, counted from the first packet received. A late
arrival that fills a gap turns that loss into an out-of-order arrival. Latency is receive time minus the
publisher's `capture_us`, so it is meaningful when both clocks agree (same host, or synchronised hosts).

Sans-I/O: every observation comes with the time it was made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from darktower.client.media import MediaKind
from darktower.proto.frame import FrameHeader

_MISSING_WINDOW: Final = 1024
"""Gaps further behind the highest sequence seen than this are no longer expected to be filled."""
_VIDEO_GROUPS_KEPT: Final = 32
"""Per-group state kept for the most recent groups; older groups are finished."""


class SequenceTracker:
    """Loss and reordering within one sequence space.

    `add` returns the change it made to the loss count (the size of a new gap, or -1 when a late arrival
    fills one) and whether the arrival was out of order. A number seen before, or too old to tell, counts
    as neither.
    """

    __slots__ = ("_highest", "_missing")

    def __init__(self, first_expected: int | None) -> None:
        """`first_expected` is the sequence the space starts at; None starts it at the first one seen."""
        self._highest = None if first_expected is None else first_expected - 1
        self._missing: set[int] = set()

    def add(self, seq: int) -> tuple[int, bool]:
        if self._highest is None:
            self._highest = seq
            return 0, False
        if seq > self._highest:
            gap = seq - self._highest - 1
            floor = seq - _MISSING_WINDOW
            self._missing.update(range(max(self._highest + 1, floor), seq))
            self._highest = seq
            if self._missing and min(self._missing) < floor:
                self._missing = {s for s in self._missing if s >= floor}
            return gap, False
        if seq in self._missing:
            self._missing.discard(seq)
            return -1, True
        return 0, False


@dataclass(slots=True)
class TrackStats:
    """One remote publisher's media of one kind, as this receiver saw it."""

    received: int = 0
    """Frames received, damaged ones included."""
    corrupt: int = 0
    unverified: int = 0
    """Frames from a real encoder (a browser): counted and timed, but not checkable byte for byte."""
    """Frames whose bytes were not exactly what the publisher sent."""
    lost: int = 0
    out_of_order: int = 0
    first_frame: FrameHeader | None = None
    first_media_us: int | None = None
    latencies_us: list[int] = field(default_factory=list)


class ReceiveStats:
    """All remote media one participant received."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[str, MediaKind], TrackStats] = {}
        self.malformed = 0
        """Frames (or stream ends) that could not be parsed."""
        self.unattributed = 0
        """Well-formed frames of a track this receiver does not know (any more): media still in flight when
        its track's end was signaled, which the separate signaling stream can overtake."""
        self.join_us: int | None = None
        self.first_media_us: int | None = None
        self._audio: dict[str, SequenceTracker] = {}
        self._video: dict[str, dict[int, SequenceTracker]] = {}

    def joined(self, now_us: int) -> None:
        """Marks the start of the first join: the origin of `join_to_first_media_ms`."""
        if self.join_us is None:
            self.join_us = now_us

    def record_malformed(self) -> None:
        self.malformed += 1

    def record_unattributed(self) -> None:
        self.unattributed += 1

    def record(
        self,
        publisher_id: str,
        kind: MediaKind,
        header: FrameHeader,
        ok: bool,
        now_us: int,
        *,
        checkable: bool = True,
    ) -> None:
        """One frame arrived at `now_us`; `ok` says whether it verified byte for byte. A frame that is not
        `checkable` (real encoder output) counts as `unverified`, never as corrupt."""
        stats = self.track(publisher_id, kind)
        stats.received += 1
        if stats.first_frame is None:
            stats.first_frame = header
            stats.first_media_us = now_us
        if self.first_media_us is None:
            self.first_media_us = now_us
        if not checkable:
            stats.unverified += 1
        elif not ok:
            stats.corrupt += 1
            return
        stats.latencies_us.append(now_us - header.capture_us)
        lost, reordered = self._sequence(publisher_id, kind, header.group).add(header.object_seq)
        stats.lost += lost
        stats.out_of_order += reordered

    def track(self, publisher_id: str, kind: MediaKind) -> TrackStats:
        stats = self.tracks.get((publisher_id, kind))
        if stats is None:
            stats = self.tracks[publisher_id, kind] = TrackStats()
        return stats

    @property
    def join_to_first_media_ms(self) -> float | None:
        if self.join_us is None or self.first_media_us is None:
            return None
        return (self.first_media_us - self.join_us) / 1000

    def latency_ms(self) -> dict[str, float | None]:
        """p50 and p99 of every verified frame's latency, in milliseconds (nearest rank)."""
        samples = sorted(s for stats in self.tracks.values() for s in stats.latencies_us)
        return {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}

    def summary(self) -> dict[str, Any]:
        """The receive half of `darktower bot`'s JSON line."""
        received: dict[str, dict[str, int]] = {}
        for (publisher, kind), stats in sorted(self.tracks.items()):
            received.setdefault(publisher, {"audio": 0, "video": 0})[kind] = stats.received
        return {
            "received": received,
            "join_to_first_media_ms": self.join_to_first_media_ms,
            "latency_ms": self.latency_ms(),
            "lost": sum(s.lost for s in self.tracks.values()),
            "out_of_order": sum(s.out_of_order for s in self.tracks.values()),
            "corrupt": sum(s.corrupt for s in self.tracks.values()) + self.malformed,
            "unverified": sum(s.unverified for s in self.tracks.values()),
            "unattributed": self.unattributed,
        }

    def _sequence(self, publisher_id: str, kind: MediaKind, group: int) -> SequenceTracker:
        if kind == "audio":
            tracker = self._audio.get(publisher_id)
            if tracker is None:
                tracker = self._audio[publisher_id] = SequenceTracker(first_expected=None)
            return tracker
        groups = self._video.setdefault(publisher_id, {})
        tracker = groups.get(group)
        if tracker is None:
            tracker = groups[group] = SequenceTracker(first_expected=0)
            if len(groups) > _VIDEO_GROUPS_KEPT:
                del groups[min(groups)]
        return tracker


def percentile(sorted_samples: list[int], p: float) -> float | None:
    """Nearest-rank percentile of samples in µs, in milliseconds; None without samples."""
    if not sorted_samples:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1] / 1000
