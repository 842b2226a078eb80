"""A participant's view of its meeting: who else is there, which tracks exist, which it subscribes to.

Sans-I/O: fed the `JoinResponse` and the server's roster and track events, in order. The participant's own
ids (one per session, as a rejoin gets a new one) never appear in its roster, so a session the server has
not yet noticed is gone is not mistaken for someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from darktower.client.media import MediaKind
from darktower.proto import signaling_pb2 as pb

KINDS: Final[dict[MediaKind, pb.TrackKind]] = {
    "audio": pb.TRACK_KIND_AUDIO,
    "video": pb.TRACK_KIND_VIDEO,
}


@dataclass(frozen=True, slots=True)
class Peer:
    participant_id: str
    display_name: str
    can_publish: bool
    can_subscribe: bool

    @classmethod
    def from_proto(cls, p: pb.Participant) -> Peer:
        return cls(p.participant_id, p.display_name, p.can_publish, p.can_subscribe)


@dataclass(frozen=True, slots=True)
class RemoteTrack:
    """A track published in the meeting (this participant's own included)."""

    track_id: int
    participant_id: str
    kind: MediaKind | None
    """None for a kind this client does not know."""
    codec: str
    label: str

    @classmethod
    def from_proto(cls, t: pb.Track) -> RemoteTrack:
        kind = next((k for k, v in KINDS.items() if v == t.kind), None)
        return cls(t.track_id, t.participant_id, kind, t.codec, t.label)


class Roster:
    """The collections are updated in place, so views of them (a media receiver's track map) stay current."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        """Everyone else in the meeting, by participant id."""
        self.tracks: dict[int, RemoteTrack] = {}
        self.subscriptions: set[int] = set()
        self.own_ids: set[str] = set()

    def joined(self, participant_id: str, response: pb.JoinResponse) -> None:
        """A session began: its `JoinResponse` replaces what earlier sessions knew; subscriptions to tracks
        that no longer exist are dropped."""
        self.own_ids.add(participant_id)
        self.peers.clear()
        self.peers.update(
            (p.participant_id, Peer.from_proto(p))
            for p in response.roster
            if p.participant_id not in self.own_ids
        )
        self.tracks.clear()
        self.tracks.update((t.track_id, RemoteTrack.from_proto(t)) for t in response.tracks)
        self.subscriptions &= set(self.tracks)

    def add_track(self, track: RemoteTrack) -> None:
        self.tracks[track.track_id] = track

    def forget_track(self, track_id: int) -> None:
        self.tracks.pop(track_id, None)
        self.subscriptions.discard(track_id)

    def others_tracks(self) -> list[int]:
        """Tracks published by anyone but this participant, in track id order."""
        return sorted(t.track_id for t in self.tracks.values() if t.participant_id not in self.own_ids)

    def apply(self, message: pb.ServerMessage) -> RemoteTrack | None:
        """Applies a roster or track event; returns a track someone else just published, else None."""
        body = message.WhichOneof("body")
        if body == "participant_joined":
            peer = Peer.from_proto(message.participant_joined.participant)
            if peer.participant_id not in self.own_ids:
                self.peers[peer.participant_id] = peer
        elif body == "participant_left":
            gone = message.participant_left.participant_id
            self.peers.pop(gone, None)
            for track_id in [t.track_id for t in self.tracks.values() if t.participant_id == gone]:
                self.forget_track(track_id)
        elif body == "track_published":
            track = RemoteTrack.from_proto(message.track_published.track)
            self.add_track(track)
            if track.participant_id not in self.own_ids:
                return track
        elif body == "track_unpublished":
            self.forget_track(message.track_unpublished.track_id)
        return None
