"""Turns received media (datagrams and unidirectional stream chunks) into attributed, verified frames.

Sans-I/O: one `MediaReceiver` per media session; the adapter hands it every datagram and every chunk of a
unidirectional stream with the time it arrived. Each frame is attributed to its publisher through the
meeting's tracks, checked byte for byte against the synthetic format when asked, counted in the shared
`ReceiveStats` and passed to the frame callback. A frame that does not parse is counted as malformed, and
a stream that sent one is ignored until it ends; a frame of a track not (or no longer) known is counted as
unattributed. With end-to-end encryption an opener decrypts each attributed frame first; a frame it refuses
is dropped here (and counted by the opener), never verified or passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from darktower.client.media import is_synthetic, verify
from darktower.client.roster import RemoteTrack
from darktower.client.stats import ReceiveStats
from darktower.proto.frame import MAX_U32, FrameError, FrameHeader, FrameReader, decode_frame

FrameCallback = Callable[[RemoteTrack, FrameHeader, bytes, bool], None]
"""(track, header, the frame's bytes, verified) for every media frame received."""
FrameOpener = Callable[[RemoteTrack, bytes, int], bytes | None]
"""(track, frame, now µs) -> the frame with its payload decrypted, or None when it was refused (the opener
counts why); end-to-end encryption's hook, applied before anything else looks at the payload."""


class MediaReceiver:
    def __init__(
        self,
        tracks: Mapping[int, RemoteTrack],
        stats: ReceiveStats,
        *,
        verify_media: bool = True,
        on_frame: FrameCallback | None = None,
        max_payload: int = MAX_U32,
        opener: FrameOpener | None = None,
    ) -> None:
        self.max_payload = max_payload
        self._opener = opener
        self._tracks = tracks
        self._stats = stats
        self._verify = verify_media
        self._on_frame = on_frame
        self._streams: dict[int, FrameReader | None] = {}
        """Per open stream: its parser, or None once it sent a malformed frame."""

    def datagram(self, data: bytes, now_us: int) -> int:
        """One datagram (one audio frame); returns the number of frames delivered (0 or 1)."""
        try:
            header, _ = decode_frame(data, self.max_payload)
        except FrameError:
            self._stats.record_malformed()
            return 0
        return self._deliver(header, data, now_us)

    def stream_data(self, stream_id: int, data: bytes, end_stream: bool, now_us: int) -> int:
        """A chunk of unidirectional stream `stream_id`; returns the number of frames delivered."""
        reader = self._streams[stream_id] if stream_id in self._streams else FrameReader(self.max_payload)
        delivered = 0
        if reader is not None:
            try:
                for header, frame in reader.feed(data):
                    delivered += self._deliver(header, frame, now_us)
                if end_stream:
                    reader.close()
            except FrameError:
                self._stats.record_malformed()
                reader = None
        if end_stream:
            self._streams.pop(stream_id, None)
        else:
            self._streams[stream_id] = reader
        return delivered

    def stream_reset(self, stream_id: int) -> None:
        """The sender abandoned the stream (a group dropped for a lagging receiver): what was partly
        received of it is discarded, not counted as damage."""
        self._streams.pop(stream_id, None)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _deliver(self, header: FrameHeader, data: bytes, now_us: int) -> int:
        track = self._tracks.get(header.track_id)
        if track is None or track.kind is None:
            self._stats.record_unattributed()
            return 0
        if self._opener is not None:
            opened = self._opener(track, data, now_us)
            if opened is None:
                return 0
            data = opened
        if not self._verify:
            ok, checkable = True, True
        else:
            # Real encoder output (a browser's) cannot be checked; a synthetic frame whose marker itself was
            # damaged is counted with it, as unverified.
            checkable = is_synthetic(data)
            ok = checkable and verify(data, track.participant_id)
        self._stats.record(track.participant_id, track.kind, header, ok, now_us, checkable=checkable)
        if self._on_frame is not None:
            self._on_frame(track, header, data, ok)
        return 1
