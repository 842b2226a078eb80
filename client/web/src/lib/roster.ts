/**
 * Who is in the meeting and what they publish, as this participant's signaling has told it; free of I/O.
 *
 * `joined` takes a JoinResponse (the first one, or the one after a reconnect) and `apply` each server event;
 * both return how the set of other participants' tracks changed, so the session knows which receivers to
 * open, which to close, and what to subscribe to. A reconnect keeps the receivers of tracks that are still
 * there: other publishers' track ids do not change when this participant's session does. A reconnect gives
 * this participant a new id; its former ids never show as someone else (the server may still hold the
 * dropped session for a while and list it).
 */
import { Role, TrackKind, type JoinResponse, type Participant, type Track } from "../gen/signaling_pb";
import type { SignalingEvent } from "./signaling";

/** The label a publisher gives its screen-share track; any other video track is a camera. */
export const SCREEN_LABEL = "screen";

export interface TrackChanges {
  added: Track[];
  removed: Track[];
}

/** One other participant as the UI shows them. */
export interface ParticipantState {
  participantId: string;
  displayName: string;
  /** It announced end-to-end encryption: its media must be opened, plaintext from it is refused. */
  e2ee: boolean;
  /** From their join token: a host may mute, remove, lock and end. */
  role: Role;
  audio: Track | null;
  camera: Track | null;
  screen: Track | null;
}

export class Roster {
  private selfId = "";
  private readonly formerSelves = new Set<string>();
  private readonly people = new Map<string, Participant>();
  private readonly trackMap = new Map<number, Track>();

  /** (Re)starts from a JoinResponse: everything not in it is gone, everything in it is current. */
  joined(response: JoinResponse): TrackChanges {
    if (this.selfId !== "" && this.selfId !== response.participantId) this.formerSelves.add(this.selfId);
    this.selfId = response.participantId;
    this.people.clear();
    for (const participant of response.roster) {
      if (this.isOther(participant.participantId)) this.people.set(participant.participantId, participant);
    }
    const fresh = new Map(
      response.tracks
        .filter((track) => this.isOther(track.participantId))
        .map((track) => [track.trackId, track]),
    );
    const removed = [...this.trackMap.values()].filter((track) => !fresh.has(track.trackId));
    const added = [...fresh.values()].filter((track) => !this.trackMap.has(track.trackId));
    this.trackMap.clear();
    for (const [trackId, track] of fresh) this.trackMap.set(trackId, track);
    return { added, removed };
  }

  /** Applies one server-initiated message; events that change no roster state return no changes. */
  apply(event: SignalingEvent): TrackChanges {
    const none: TrackChanges = { added: [], removed: [] };
    switch (event.case) {
      case "participantJoined": {
        const participant = event.value.participant;
        if (participant !== undefined && this.isOther(participant.participantId)) {
          this.people.set(participant.participantId, participant);
        }
        return none;
      }
      case "participantLeft": {
        this.people.delete(event.value.participantId);
        const removed = [...this.trackMap.values()].filter(
          (track) => track.participantId === event.value.participantId,
        );
        for (const track of removed) this.trackMap.delete(track.trackId);
        return { added: [], removed };
      }
      case "trackPublished": {
        const track = event.value.track;
        if (track === undefined || !this.isOther(track.participantId) || this.trackMap.has(track.trackId))
          return none;
        this.trackMap.set(track.trackId, track);
        return { added: [track], removed: [] };
      }
      case "trackUnpublished": {
        const track = this.trackMap.get(event.value.trackId);
        if (track === undefined) return none;
        this.trackMap.delete(track.trackId);
        return { added: [], removed: [track] };
      }
      default:
        return none;
    }
  }

  track(trackId: number): Track | undefined {
    return this.trackMap.get(trackId);
  }

  /** Whether `participantId` announced end-to-end encryption in its Join. */
  encrypts(participantId: string): boolean {
    return this.people.get(participantId)?.e2ee ?? false;
  }

  displayName(participantId: string): string | undefined {
    return this.people.get(participantId)?.displayName;
  }

  /** Everyone else, in the order they became known, with their tracks by role. */
  participants(): ParticipantState[] {
    return [...this.people.values()].map((participant) => {
      const tracks = [...this.trackMap.values()].filter(
        (track) => track.participantId === participant.participantId,
      );
      const video = tracks.filter((track) => track.kind === TrackKind.VIDEO);
      return {
        participantId: participant.participantId,
        displayName: participant.displayName,
        e2ee: participant.e2ee,
        role: participant.role,
        audio: tracks.find((track) => track.kind === TrackKind.AUDIO) ?? null,
        camera: video.find((track) => track.label !== SCREEN_LABEL) ?? null,
        screen: video.find((track) => track.label === SCREEN_LABEL) ?? null,
      };
    });
  }

  private isOther(participantId: string): boolean {
    return participantId !== this.selfId && !this.formerSelves.has(participantId);
  }
}
