"""The participant's view of its meeting follows the JoinResponse and the server's events."""

from __future__ import annotations

from darktower.client.roster import Peer, RemoteTrack, Roster
from darktower.proto import signaling_pb2 as pb


def participant(pid: str) -> pb.Participant:
    return pb.Participant(participant_id=pid, display_name=pid.upper(), can_publish=True, can_subscribe=True)


def track(track_id: int, pid: str, kind: pb.TrackKind = pb.TRACK_KIND_VIDEO) -> pb.Track:
    return pb.Track(track_id=track_id, participant_id=pid, kind=kind, codec="vp8", label="camera")


def joined(roster: Roster, me: str, peers: list[str], tracks: list[pb.Track]) -> None:
    roster.joined(
        me,
        pb.JoinResponse(
            participant_id=me, meeting_id="m", roster=[participant(p) for p in peers], tracks=tracks
        ),
    )


def test_the_join_response_sets_peers_and_tracks() -> None:
    roster = Roster()
    joined(roster, "me", ["alice", "bob"], [track(1, "alice", pb.TRACK_KIND_AUDIO), track(2, "bob")])
    assert roster.peers == {
        "alice": Peer("alice", "ALICE", can_publish=True, can_subscribe=True),
        "bob": Peer("bob", "BOB", can_publish=True, can_subscribe=True),
    }
    assert roster.tracks[1] == RemoteTrack(1, "alice", "audio", "vp8", "camera")
    assert roster.tracks[2].kind == "video"
    assert roster.others_tracks() == [1, 2]


def test_events_update_peers_and_tracks() -> None:
    roster = Roster()
    joined(roster, "me", ["alice"], [track(1, "alice")])
    roster.subscriptions.add(1)
    assert (
        roster.apply(
            pb.ServerMessage(participant_joined=pb.ParticipantJoined(participant=participant("bob")))
        )
        is None
    )
    published = roster.apply(pb.ServerMessage(track_published=pb.TrackPublished(track=track(5, "bob"))))
    assert published == RemoteTrack(5, "bob", "video", "vp8", "camera")
    assert set(roster.peers) == {"alice", "bob"}
    roster.apply(pb.ServerMessage(participant_left=pb.ParticipantLeft(participant_id="alice")))
    assert set(roster.peers) == {"bob"}
    assert set(roster.tracks) == {5}
    assert roster.subscriptions == set()
    roster.apply(pb.ServerMessage(track_unpublished=pb.TrackUnpublished(track_id=5)))
    assert roster.tracks == {}


def test_own_tracks_are_known_but_not_someone_elses() -> None:
    roster = Roster()
    joined(roster, "me", [], [])
    assert roster.apply(pb.ServerMessage(track_published=pb.TrackPublished(track=track(3, "me")))) is None
    roster.add_track(RemoteTrack(4, "me", "audio", "opus", "microphone"))
    assert set(roster.tracks) == {3, 4}
    assert roster.others_tracks() == []


def test_a_rejoin_forgets_its_earlier_self_and_vanished_tracks() -> None:
    roster = Roster()
    joined(roster, "me-1", ["alice"], [track(1, "alice"), track(2, "alice")])
    roster.subscriptions.update({1, 2})
    joined(roster, "me-2", ["alice", "me-1"], [track(2, "alice"), track(7, "me-1")])
    assert set(roster.peers) == {"alice"}
    assert roster.subscriptions == {2}
    assert roster.others_tracks() == [2]
    roster.apply(pb.ServerMessage(participant_joined=pb.ParticipantJoined(participant=participant("me-1"))))
    assert set(roster.peers) == {"alice"}


def test_a_track_of_an_unknown_kind_is_kept_without_a_kind() -> None:
    roster = Roster()
    joined(roster, "me", [], [track(9, "alice", pb.TRACK_KIND_UNSPECIFIED)])
    assert roster.tracks[9].kind is None


def test_a_view_of_the_tracks_stays_current_across_joins() -> None:
    roster = Roster()
    view = roster.tracks
    joined(roster, "me-1", [], [track(1, "alice")])
    joined(roster, "me-2", [], [track(2, "alice")])
    assert set(view) == {2}
