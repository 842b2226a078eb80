"""`Meeting`: one meeting's roster, tracks and subscriptions, and the decisions about whom media goes to.

Sans-I/O: every method takes the event (and `now_us` where time matters) and returns the actions to carry
out. A refused request raises `RequestRefusedError`, which the session turns into its `Error` reply.

Rules kept here:
- A participant is in the meeting through one session at a time: joining again from a new session replaces
  the old one, which is told `Error{REPLACED, fatal}` and closed; its tracks are unpublished.
- Track ids are meeting-wide, allocated here from 1 up and never reused while the meeting exists.
- Video is forwarded only from the start of a group (its keyframe), so a subscriber always starts at one: a
  new subscriber, or one whose group the adapter dropped for lagging, waits for the next group, and the
  publisher is asked for a keyframe (at most once per `KEYFRAME_REQUEST_INTERVAL_US` per track).
- Key messages (end-to-end encryption) are relayed opaque, to named members of the same meeting only.
- Roles come from the join grant: a viewer never publishes; only a host may act on others (`host_action`:
  mute unpublishes the target's audio tracks and tells it `Muted`; remove closes it with `REMOVED` and its
  participant id cannot join again; lock refuses new participants except hosts; end closes everyone with
  `ENDED` and refuses later joins). Removals and ends outlive this object (`Oversight.sanctions`); a lock
  lasts while the meeting has members. The control plane (through the worker's admin channel) acts as a
  host that is not a member.
- A grant's `max_participants` (the meeting's own limit) applies when lower than the worker's.
- Subscriber lists are kept as tuples rebuilt when subscriptions change, so forwarding a frame is one
  action carrying the frame's bytes and that tuple, whatever the number of subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from darktower.core.config import LimitsConfig
from darktower.core.tokens import JoinGrant, Role
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import MAX_U32
from darktower.workers import messages
from darktower.workers.actions import Action, EndVideoGroup, SendSignaling, SendVideo
from darktower.workers.admin_state import ENDED_REMEMBERED_S, REMOVAL_MARGIN_S, Oversight
from darktower.workers.errors import RequestRefusedError

log = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL_US: Final = 1_000_000
"""Least time between two keyframe requests sent to a track's publisher."""
MAX_NAMED_UNKNOWN: Final = 3
MAX_NAMED_CHARS: Final = 64
ROLES: Final[dict[Role, pb.Role]] = {
    Role.HOST: pb.ROLE_HOST,
    Role.PARTICIPANT: pb.ROLE_PARTICIPANT,
    Role.VIEWER: pb.ROLE_VIEWER,
}
ROLE_OF: Final[dict[pb.Role, Role]] = {wire: role for role, wire in ROLES.items()}
HOST_ACTIONS: Final = frozenset(pb.HostAction.Kind.values()) - {pb.HostAction.KIND_UNSPECIFIED}
_REASONS: Final[dict[pb.ParticipantLeft.Reason, str]] = {
    pb.ParticipantLeft.REASON_UNSPECIFIED: "unspecified",
    pb.ParticipantLeft.REASON_LEFT: "left",
    pb.ParticipantLeft.REASON_DISCONNECTED: "disconnected",
    pb.ParticipantLeft.REASON_REMOVED: "removed",
}
"""An error about unknown key message recipients names this many, each cut to this length."""


class Member:
    """A participant in a meeting, through the one session it currently uses."""

    __slots__ = (
        "active",
        "can_publish",
        "can_subscribe",
        "expires_at",
        "info",
        "muted_tracks",
        "participant_id",
        "published",
        "role",
        "session",
        "subscriptions",
    )

    def __init__(self, session: int, grant: JoinGrant, *, e2ee: bool = False) -> None:
        self.session = session
        self.participant_id = grant.participant_id
        self.role = grant.role
        self.can_publish = grant.can_publish and grant.role is not Role.VIEWER
        self.can_subscribe = grant.can_subscribe
        self.expires_at = grant.expires_at
        """When its grant expires (Unix seconds): a removal is remembered until a while after."""
        self.info = pb.Participant(
            participant_id=grant.participant_id,
            display_name=grant.display_name,
            can_publish=self.can_publish,
            can_subscribe=grant.can_subscribe,
            e2ee=e2ee,
            role=ROLES[grant.role],
        )
        self.published: dict[int, Track] = {}
        self.muted_tracks: set[int] = set()
        """Audio tracks a host's mute unpublished: frames the client sent before it heard of it are dropped
        quietly, not counted as malformed (track ids are never reused)."""
        self.subscriptions: dict[int, Track] = {}
        self.active = True
        """False once the member left or was replaced; its session's input is ignored from then on."""


class Track:
    """A published track: who receives it, and for video which group is being forwarded to whom."""

    __slots__ = (
        "_group",
        "_keyframe_request",
        "_last_keyframe_request_us",
        "_receivers",
        "_stream",
        "fanout",
        "info",
        "keyframe_owed",
        "kind",
        "publisher",
        "subscribers",
        "track_id",
    )

    def __init__(self, track_id: int, publisher: Member, kind: pb.TrackKind, codec: str, label: str) -> None:
        self.track_id = track_id
        self.publisher = publisher
        self.kind = kind
        self.info = pb.Track(
            track_id=track_id, participant_id=publisher.participant_id, kind=kind, codec=codec, label=label
        )
        self.subscribers: dict[int, Member] = {}
        """Subscribing members by session, in subscription order."""
        self.fanout: tuple[int, ...] = ()
        """The subscribers' sessions: where every audio frame goes, and where the next video group goes."""
        self._stream: int | None = None
        self._group = 0
        self._receivers: tuple[int, ...] = ()
        self._last_keyframe_request_us: int | None = None
        self.keyframe_owed = False
        """A subscriber waits for a group and its keyframe request was held back by the interval: it goes
        out with the publisher's first frame after the interval, unless a new group serves it first."""
        self._keyframe_request = messages.send(
            publisher.session, pb.ServerMessage(keyframe_request=pb.KeyframeRequest(track_id=track_id))
        )

    # --- subscriptions -------------------------------------------------------------------------------

    def add_subscriber(self, member: Member) -> None:
        self.subscribers[member.session] = member
        self.fanout = tuple(self.subscribers)

    def remove_subscriber(self, session: int) -> EndVideoGroup | None:
        """Forgets the subscriber; if it was receiving the current group, the order to end its stream."""
        if self.subscribers.pop(session, None) is None:
            return None
        self.fanout = tuple(self.subscribers)
        if session not in self._receivers:
            return None
        self._receivers = tuple(s for s in self._receivers if s != session)
        return EndVideoGroup((session,), self.track_id, self._group)

    def drop_receiver(self, session: int) -> None:
        """The session gets nothing more of the current group; it rejoins at the next one."""
        if session in self._receivers:
            self._receivers = tuple(s for s in self._receivers if s != session)

    def request_keyframe(self, now_us: int) -> SendSignaling | None:
        """A `KeyframeRequest` for the publisher, unless one went out less than the interval ago (a clock
        that stepped back does not hold requests back)."""
        if self.kind != pb.TRACK_KIND_VIDEO:
            return None
        last = self._last_keyframe_request_us
        if last is not None and 0 <= now_us - last < KEYFRAME_REQUEST_INTERVAL_US:
            self.keyframe_owed = True
            return None
        self._last_keyframe_request_us = now_us
        self.keyframe_owed = False
        return self._keyframe_request

    def owed_keyframe_request(self, now_us: int) -> SendSignaling | None:
        """The held-back request, once the interval since the last one has passed."""
        return self.request_keyframe(now_us)

    # --- video groups --------------------------------------------------------------------------------

    def start_group(self, stream: int, group: int, frame: bytes) -> SendVideo | None:
        """The publisher's `stream` began a group with its keyframe: it supersedes any earlier group, and
        goes to every current subscriber."""
        self._stream = stream
        self._group = group
        self.keyframe_owed = False
        receivers = self._receivers = self.fanout
        if not receivers:
            return None
        return SendVideo(receivers, self.track_id, group, frame, starts_group=True)

    def forward(self, stream: int, frame: bytes) -> SendVideo | None:
        """A later frame of `stream`'s group, for those that got the group's start (none if superseded)."""
        if stream != self._stream or not self._receivers:
            return None
        return SendVideo(self._receivers, self.track_id, self._group, frame, starts_group=False)

    def end_group(self, stream: int) -> EndVideoGroup | None:
        if stream != self._stream:
            return None
        self._stream = None
        receivers = self._receivers
        self._receivers = ()
        return EndVideoGroup(receivers, self.track_id, self._group) if receivers else None

    def close(self) -> EndVideoGroup | None:
        """The track is unpublished: no more subscribers; ends the group being forwarded, if any."""
        end = self.end_group(self._stream) if self._stream is not None else None
        self.subscribers.clear()
        self.fanout = ()
        return end


class Meeting:
    """One meeting on this worker; it exists while it has members (`on_empty` is called when the last
    one goes)."""

    def __init__(
        self,
        meeting_id: str,
        limits: LimitsConfig,
        on_empty: Callable[[Meeting], None],
        *,
        oversight: Oversight | None = None,
    ) -> None:
        """`oversight` is shared by the worker's meetings; left out, this meeting keeps its own (its removals
        and end are then forgotten with it)."""
        self.meeting_id = meeting_id
        self._limits = limits
        self._on_empty = on_empty
        self._oversight = oversight if oversight is not None else Oversight()
        self.locked = False
        """A host locked the meeting: only hosts and members rejoining from a new session get in."""
        self.members: dict[str, Member] = {}
        """By participant id."""
        self.tracks: dict[int, Track] = {}
        self._next_track_id = 1

    @property
    def next_track_id(self) -> int:
        """The id the next published track gets."""
        return self._next_track_id

    def reserve_track_ids(self, next_track_id: int) -> None:
        """Ids below `next_track_id` were given out before (by an owner worker that restarted, whose tracks are
        being re-registered): they are never given again."""
        self._next_track_id = max(self._next_track_id, next_track_id)

    def _log_extra(self, member: Member) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "participant_id": member.participant_id}

    def _others(self, member: Member) -> list[int]:
        return [m.session for m in self.members.values() if m is not member]

    # --- roster --------------------------------------------------------------------------------------

    def join(
        self, session: int, request_id: int, grant: JoinGrant, *, e2ee: bool = False, now_us: int = 0
    ) -> tuple[Member, list[Action]]:
        """Admits the verified participant: `JoinResponse` to it, `ParticipantJoined` to the others.
        `e2ee` is what its Join announced, passed on to the others as is. Refusals (fatal): ENDED, REMOVED,
        MEETING_LOCKED, MEETING_FULL."""
        self._oversight.sanctions.check_join(self.meeting_id, grant.participant_id, now_us / 1_000_000)
        previous = self.members.get(grant.participant_id)
        if previous is None and self.locked and grant.role is not Role.HOST:
            raise RequestRefusedError(
                pb.ERROR_CODE_MEETING_LOCKED, "a host locked this meeting: no new participants", fatal=True
            )
        limit = self._limits.max_participants_per_meeting
        if grant.max_participants:
            limit = min(limit, grant.max_participants)
        if previous is None and len(self.members) >= limit:
            raise RequestRefusedError(
                pb.ERROR_CODE_MEETING_FULL, f"meeting is full ({limit} participants)", fatal=True
            )
        actions: list[Action] = []
        if previous is not None:
            actions += messages.close(
                previous.session, 0, pb.ERROR_CODE_REPLACED, "this participant joined from another session"
            )
            actions += self._remove(previous, "replaced")
            log.info("session replaced by a new one", extra=self._log_extra(previous))
        member = Member(session, grant, e2ee=e2ee)
        response = pb.JoinResponse(
            participant_id=member.participant_id,
            meeting_id=self.meeting_id,
            roster=[m.info for m in self.members.values()],
            tracks=[t.info for t in self.tracks.values()],
            max_frame_payload_bytes=self._limits.max_frame_payload_bytes,
        )
        actions.append(
            messages.send(session, pb.ServerMessage(request_id=request_id, join_response=response))
        )
        actions += messages.broadcast(
            [m.session for m in self.members.values()],
            pb.ServerMessage(participant_joined=pb.ParticipantJoined(participant=member.info)),
        )
        self.members[member.participant_id] = member
        if self._oversight.journal is not None:
            self._oversight.journal.joined(self.meeting_id, grant)
        log.info("joined (%d in meeting)", len(self.members), extra=self._log_extra(member))
        return member, actions

    def leave(self, member: Member, reason: pb.ParticipantLeft.Reason) -> list[Action]:
        """Takes the member out (no-op if already out): its tracks are unpublished, the others told."""
        if not member.active:
            return []
        actions = self._remove(member, _REASONS[reason])
        actions += messages.broadcast(
            [m.session for m in self.members.values()],
            pb.ServerMessage(
                participant_left=pb.ParticipantLeft(participant_id=member.participant_id, reason=reason)
            ),
        )
        log.info(
            "left (%s, %d in meeting)",
            pb.ParticipantLeft.Reason.Name(reason),
            len(self.members),
            extra=self._log_extra(member),
        )
        if not self.members:
            self._on_empty(self)
        return actions

    def _remove(self, member: Member, reason: str) -> list[Action]:
        member.active = False
        del self.members[member.participant_id]
        if self._oversight.journal is not None:
            self._oversight.journal.left(self.meeting_id, member.participant_id, reason)
        actions: list[Action] = []
        for track in list(member.published.values()):
            actions += self._drop_track(track)
        for track in member.subscriptions.values():
            track.remove_subscriber(member.session)
        member.subscriptions.clear()
        return actions

    # --- tracks --------------------------------------------------------------------------------------

    def publish(
        self, member: Member, request_id: int, kind: pb.TrackKind, codec: str, label: str
    ) -> list[Action]:
        if not member.can_publish:
            why = (
                "a viewer may not publish"
                if member.role is Role.VIEWER
                else "this participant may not publish"
            )
            raise RequestRefusedError(pb.ERROR_CODE_FORBIDDEN, why)
        limit = self._limits.max_tracks_per_participant
        if len(member.published) >= limit:
            raise RequestRefusedError(pb.ERROR_CODE_FORBIDDEN, f"at most {limit} tracks per participant")
        track_id = self._next_track_id
        if track_id > MAX_U32:
            raise RequestRefusedError(pb.ERROR_CODE_INTERNAL, "this meeting has used up its track ids")
        self._next_track_id = track_id + 1
        track = Track(track_id, member, kind, codec, label)
        self.tracks[track_id] = track
        member.published[track_id] = track
        reply = pb.ServerMessage(request_id=request_id, publish_response=pb.PublishResponse(track=track.info))
        actions: list[Action] = [messages.send(member.session, reply)]
        actions += messages.broadcast(
            self._others(member), pb.ServerMessage(track_published=pb.TrackPublished(track=track.info))
        )
        return actions

    def unpublish(self, member: Member, request_id: int, track_id: int) -> list[Action]:
        track = self._track(track_id)
        if track.publisher is not member:
            raise RequestRefusedError(pb.ERROR_CODE_FORBIDDEN, f"track {track_id} is someone else's")
        return [_ack(member, request_id), *self._drop_track(track)]

    def _drop_track(self, track: Track) -> list[Action]:
        track_id = track.track_id
        del self.tracks[track_id]
        del track.publisher.published[track_id]
        for subscriber in track.subscribers.values():
            subscriber.subscriptions.pop(track_id, None)
        end = track.close()
        actions: list[Action] = [end] if end is not None else []
        actions += messages.broadcast(
            self._others(track.publisher),
            pb.ServerMessage(track_unpublished=pb.TrackUnpublished(track_id=track_id)),
        )
        return actions

    def _track(self, track_id: int) -> Track:
        track = self.tracks.get(track_id)
        if track is None:
            raise RequestRefusedError(pb.ERROR_CODE_UNKNOWN_TRACK, f"no track {track_id} in this meeting")
        return track

    # --- subscriptions -------------------------------------------------------------------------------

    def subscribe(self, member: Member, request_id: int, track_id: int, now_us: int) -> list[Action]:
        """Subscribes (idempotent). Video starts at the next group; its publisher is asked for one."""
        if not member.can_subscribe:
            raise RequestRefusedError(pb.ERROR_CODE_FORBIDDEN, "this participant may not subscribe")
        track = self._track(track_id)
        actions: list[Action] = [_ack(member, request_id)]
        if track_id not in member.subscriptions:
            member.subscriptions[track_id] = track
            track.add_subscriber(member)
            request = track.request_keyframe(now_us)
            if request is not None:
                actions.append(request)
        return actions

    def unsubscribe(self, member: Member, request_id: int, track_id: int) -> list[Action]:
        track = self._track(track_id)
        actions: list[Action] = [_ack(member, request_id)]
        if member.subscriptions.pop(track_id, None) is not None:
            end = track.remove_subscriber(member.session)
            if end is not None:
                actions.append(end)
        return actions

    def request_keyframe(self, member: Member, request_id: int, track_id: int, now_us: int) -> list[Action]:
        """A subscriber's decoder needs a keyframe: passed on to the publisher, within the rate limit."""
        track = self._track(track_id)
        actions: list[Action] = [_ack(member, request_id)]
        request = track.request_keyframe(now_us)
        if request is not None:
            actions.append(request)
        return actions

    def subscriber_lagging(self, member: Member, track_id: int, now_us: int) -> list[Action]:
        """The adapter dropped the member's current group of the track: it waits for the next one."""
        track = member.subscriptions.get(track_id)
        if track is None:
            return []
        track.drop_receiver(member.session)
        request = track.request_keyframe(now_us)
        return [request] if request is not None else []

    # --- end-to-end key messages ----------------------------------------------------------------------

    def relay_key_message(
        self, member: Member, request_id: int, to_participant_ids: list[str], payload: bytes
    ) -> list[Action]:
        """Relays the opaque payload to the named members (everyone else when none are named): `Ack`, or
        `Error{UNKNOWN_PARTICIPANT}` when some named are not other members (the rest still get it)."""
        if to_participant_ids:
            recipients: list[int] = []
            unknown: list[str] = []
            for participant_id in dict.fromkeys(to_participant_ids):
                recipient = self.members.get(participant_id)
                if recipient is None or recipient is member:
                    unknown.append(participant_id)
                else:
                    recipients.append(recipient.session)
        else:
            recipients, unknown = self._others(member), []
        received = pb.KeyMessageReceived(from_participant_id=member.participant_id, payload=payload)
        actions = messages.broadcast(recipients, pb.ServerMessage(key_message_received=received))
        if not unknown:
            actions.append(_ack(member, request_id))
            return actions
        named = ", ".join(repr(p[:MAX_NAMED_CHARS]) for p in unknown[:MAX_NAMED_UNKNOWN])
        more = f" and {len(unknown) - MAX_NAMED_UNKNOWN} more" if len(unknown) > MAX_NAMED_UNKNOWN else ""
        actions.append(
            messages.error(
                member.session,
                request_id,
                pb.ERROR_CODE_UNKNOWN_PARTICIPANT,
                f"not another participant of this meeting: {named}{more}",
                fatal=False,
            )
        )
        return actions

    # --- host actions --------------------------------------------------------------------------------

    def host_action(
        self, actor: Member | None, kind: pb.HostAction.Kind, participant_id: str, now_us: int
    ) -> list[Action]:
        """Carries out a host's action (`actor` None: the control plane, which needs no role). Raises
        `RequestRefusedError`: PERMISSION_DENIED when the actor is not a host, UNKNOWN_PARTICIPANT when the
        target of MUTE or REMOVE is not a member, MALFORMED for an unknown kind."""
        if actor is not None and actor.role is not Role.HOST:
            raise RequestRefusedError(pb.ERROR_CODE_PERMISSION_DENIED, "only a host may do that")
        by = actor.participant_id if actor is not None else ""
        extra = {"meeting_id": self.meeting_id, "participant_id": by or None, "target": participant_id}
        log.info(
            "host action %s", pb.HostAction.Kind.Name(kind) if kind in HOST_ACTIONS else kind, extra=extra
        )
        if kind in (pb.HostAction.KIND_LOCK, pb.HostAction.KIND_UNLOCK):
            self.locked = kind == pb.HostAction.KIND_LOCK
            return []
        if kind == pb.HostAction.KIND_END:
            return self.end(now_us)
        if kind not in (pb.HostAction.KIND_MUTE, pb.HostAction.KIND_REMOVE):
            raise RequestRefusedError(pb.ERROR_CODE_MALFORMED, f"unknown host action {kind}")
        target = self.members.get(participant_id)
        if target is None:
            raise RequestRefusedError(
                pb.ERROR_CODE_UNKNOWN_PARTICIPANT,
                f"no participant {participant_id[:MAX_NAMED_CHARS]!r} in this meeting",
            )
        if kind == pb.HostAction.KIND_MUTE:
            return self._mute(target, by)
        now_s = now_us / 1_000_000
        # A member re-registered after its owner restarted has no known expiry: remember it the longest.
        until = target.expires_at + REMOVAL_MARGIN_S if target.expires_at else now_s + ENDED_REMEMBERED_S
        self._oversight.sanctions.remove(self.meeting_id, target.participant_id, until, now_s)
        actions = messages.close(
            target.session, 0, pb.ERROR_CODE_REMOVED, "a host removed you from the meeting"
        )
        return actions + self.leave(target, pb.ParticipantLeft.REASON_REMOVED)

    def _mute(self, target: Member, by: str) -> list[Action]:
        """Unpublishes the target's audio tracks (the others get `TrackUnpublished`) and tells it `Muted`."""
        audio = [track for track in target.published.values() if track.kind == pb.TRACK_KIND_AUDIO]
        actions: list[Action] = []
        for track in audio:
            target.muted_tracks.add(track.track_id)
            actions += self._drop_track(track)
        muted = pb.Muted(by_participant_id=by, track_ids=[track.track_id for track in audio])
        actions.append(messages.send(target.session, pb.ServerMessage(muted=muted)))
        return actions

    def end(self, now_us: int) -> list[Action]:
        """Closes every member's session with `ENDED`; later joins are refused (see `Sanctions`)."""
        self._oversight.sanctions.end(self.meeting_id, now_us / 1_000_000)
        actions: list[Action] = []
        for track in self.tracks.values():
            end = track.close()
            if end is not None:
                actions.append(end)
        self.tracks.clear()
        members = list(self.members.values())
        self.members.clear()
        for member in members:
            member.active = False
            member.published.clear()
            member.subscriptions.clear()
            if self._oversight.journal is not None:
                self._oversight.journal.left(self.meeting_id, member.participant_id, "ended")
            actions += messages.close(member.session, 0, pb.ERROR_CODE_ENDED, "the meeting has ended")
        log.info("ended (%d participants closed)", len(members), extra={"meeting_id": self.meeting_id})
        if members:
            self._on_empty(self)
        return actions

    def dump(self) -> dict[str, Any]:
        return {"participants": list(self.members), "tracks": len(self.tracks)}

    def snapshot(self) -> dict[str, Any]:
        """Who is in the meeting and what they publish, as JSON-ready values (the admin view)."""
        return {
            "meeting_id": self.meeting_id,
            "locked": self.locked,
            "participants": [
                {
                    "participant_id": member.participant_id,
                    "display_name": member.info.display_name,
                    "role": member.role.value,
                    "e2ee": member.info.e2ee,
                    "can_publish": member.can_publish,
                    "can_subscribe": member.can_subscribe,
                }
                for member in self.members.values()
            ],
            "tracks": [
                {
                    "track_id": track.track_id,
                    "participant_id": track.publisher.participant_id,
                    "kind": "audio" if track.kind == pb.TRACK_KIND_AUDIO else "video",
                    "codec": track.info.codec,
                    "label": track.info.label,
                    "subscribers": len(track.subscribers),
                }
                for track in self.tracks.values()
            ],
        }


def _ack(member: Member, request_id: int) -> SendSignaling:
    return messages.send(member.session, pb.ServerMessage(request_id=request_id, ack=pb.Ack()))


def control_plane_action(
    meeting: Meeting | None,
    oversight: Oversight,
    meeting_id: str,
    *,
    kind: pb.HostAction.Kind,
    participant_id: str,
    now_us: int,
) -> list[Action]:
    """A host action the control plane asks a worker for (through its admin channel), on `meeting` if it is
    live on the worker. Ending a meeting that is not live still refuses its later joins; the other actions
    on it raise `RequestRefusedError(UNKNOWN_PARTICIPANT)` (nobody is there to act on)."""
    if meeting is not None:
        return meeting.host_action(None, kind, participant_id, now_us)
    if kind == pb.HostAction.KIND_END:
        oversight.sanctions.end(meeting_id, now_us / 1_000_000)
        return []
    if kind not in HOST_ACTIONS:
        raise RequestRefusedError(pb.ERROR_CODE_MALFORMED, f"unknown host action {kind}")
    raise RequestRefusedError(pb.ERROR_CODE_UNKNOWN_PARTICIPANT, f"meeting {meeting_id!r} has nobody here")
