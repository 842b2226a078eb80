/** Roster: the meeting as signaling describes it, and the track changes the session acts on. */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import {
  JoinResponseSchema,
  ParticipantLeft_Reason,
  ParticipantSchema,
  Role,
  TrackKind,
  TrackSchema,
  type JoinResponse,
  type Track,
} from "../src/gen/signaling_pb";
import { Roster } from "../src/lib/roster";

function track(trackId: number, participantId: string, kind: TrackKind, label = ""): Track {
  return create(TrackSchema, { trackId, participantId, kind, codec: "vp8", label });
}

function joinResponse(participantId: string, people: string[], tracks: Track[]): JoinResponse {
  return create(JoinResponseSchema, {
    participantId,
    roster: people.map((id) =>
      create(ParticipantSchema, { participantId: id, displayName: id.toUpperCase() }),
    ),
    tracks,
  });
}

const ids = (tracks: Track[]) => tracks.map((t) => t.trackId);

describe("Roster", () => {
  it("takes everyone else and their tracks from the JoinResponse, sorted by role", () => {
    const roster = new Roster();
    const changes = roster.joined(
      joinResponse(
        "me",
        ["bob"],
        [
          track(1, "bob", TrackKind.AUDIO),
          track(2, "bob", TrackKind.VIDEO, "camera"),
          track(3, "bob", TrackKind.VIDEO, "screen"),
          track(4, "me", TrackKind.VIDEO),
        ],
      ),
    );
    expect(ids(changes.added)).toEqual([1, 2, 3]);
    expect(changes.removed).toEqual([]);
    const [bob] = roster.participants();
    expect(bob).toMatchObject({ participantId: "bob", displayName: "BOB" });
    expect([bob?.audio?.trackId, bob?.camera?.trackId, bob?.screen?.trackId]).toEqual([1, 2, 3]);
    expect(roster.track(4)).toBeUndefined();
  });

  it("follows joins, publications, unpublications and departures", () => {
    const roster = new Roster();
    roster.joined(joinResponse("me", [], []));
    roster.apply({
      case: "participantJoined",
      value: {
        $typeName: "darktower.signaling.v1.ParticipantJoined",
        participant: create(ParticipantSchema, { participantId: "ann", displayName: "Ann" }),
      },
    });
    const published = roster.apply({
      case: "trackPublished",
      value: { $typeName: "darktower.signaling.v1.TrackPublished", track: track(7, "ann", TrackKind.AUDIO) },
    });
    expect(ids(published.added)).toEqual([7]);
    expect(roster.participants()[0]?.audio?.trackId).toBe(7);
    const muted = roster.apply({
      case: "trackUnpublished",
      value: { $typeName: "darktower.signaling.v1.TrackUnpublished", trackId: 7 },
    });
    expect(ids(muted.removed)).toEqual([7]);
    expect(roster.participants()[0]?.audio).toBeNull();
    roster.apply({
      case: "trackPublished",
      value: { $typeName: "darktower.signaling.v1.TrackPublished", track: track(8, "ann", TrackKind.VIDEO) },
    });
    const left = roster.apply({
      case: "participantLeft",
      value: {
        $typeName: "darktower.signaling.v1.ParticipantLeft",
        participantId: "ann",
        reason: ParticipantLeft_Reason.LEFT,
      },
    });
    expect(ids(left.removed)).toEqual([8]);
    expect(roster.participants()).toEqual([]);
  });

  it("ignores duplicate publications and unknown unpublications", () => {
    const roster = new Roster();
    roster.joined(joinResponse("me", ["bob"], [track(1, "bob", TrackKind.AUDIO)]));
    const again = roster.apply({
      case: "trackPublished",
      value: { $typeName: "darktower.signaling.v1.TrackPublished", track: track(1, "bob", TrackKind.AUDIO) },
    });
    expect(again).toEqual({ added: [], removed: [] });
    const unknown = roster.apply({
      case: "trackUnpublished",
      value: { $typeName: "darktower.signaling.v1.TrackUnpublished", trackId: 99 },
    });
    expect(unknown).toEqual({ added: [], removed: [] });
  });

  it("after a reconnect keeps surviving tracks and reports only what changed", () => {
    const roster = new Roster();
    roster.joined(
      joinResponse(
        "me",
        ["bob", "cat"],
        [track(1, "bob", TrackKind.VIDEO), track(2, "cat", TrackKind.VIDEO)],
      ),
    );
    const changes = roster.joined(
      joinResponse(
        "me-again",
        ["bob", "dan"],
        [track(1, "bob", TrackKind.VIDEO), track(5, "dan", TrackKind.AUDIO)],
      ),
    );
    expect(ids(changes.removed)).toEqual([2]);
    expect(ids(changes.added)).toEqual([5]);
    expect(roster.participants().map((p) => p.participantId)).toEqual(["bob", "dan"]);
  });

  it("never shows this participant's former self, which the server may still list after a reconnect", () => {
    const roster = new Roster();
    roster.joined(joinResponse("me", ["bob"], []));
    const changes = roster.joined(joinResponse("me-again", ["bob", "me"], [track(3, "me", TrackKind.VIDEO)]));
    expect(changes.added).toEqual([]);
    expect(roster.participants().map((p) => p.participantId)).toEqual(["bob"]);
    roster.apply({
      case: "trackPublished",
      value: { $typeName: "darktower.signaling.v1.TrackPublished", track: track(4, "me", TrackKind.AUDIO) },
    });
    expect(roster.track(4)).toBeUndefined();
  });

  it("keeps each participant's role, from the JoinResponse and from later joins", () => {
    const roster = new Roster();
    const response = joinResponse("me", ["a"], []);
    const [first] = response.roster;
    if (first !== undefined) first.role = Role.HOST;
    roster.joined(response);
    const participant = create(ParticipantSchema, {
      participantId: "b",
      displayName: "B",
      role: Role.PARTICIPANT,
    });
    roster.apply({
      case: "participantJoined",
      value: { $typeName: "darktower.signaling.v1.ParticipantJoined", participant },
    });
    expect(roster.participants().map((peer) => [peer.participantId, peer.role])).toEqual([
      ["a", Role.HOST],
      ["b", Role.PARTICIPANT],
    ]);
  });
});
