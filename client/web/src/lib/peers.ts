/**
 * Everyone else as the tiles and the participant list show them, built from what the session knows: the
 * roster, the end-to-end keys (locks, safety numbers), the tiles kept across reconnects (continuity.ts) and
 * who is speaking.
 */
import type { TileContinuity } from "./continuity";
import type { KeyManager } from "./e2ee";
import type { Roster } from "./roster";
import type { SpeakerDetector } from "./speaker";
import { Role } from "../gen/signaling_pb";

/** Someone else in the meeting, as their tile and the participant list show them. */
export interface PeerView {
  participantId: string;
  /** Stable across the participant's reconnects (see continuity.ts): key tiles by it. */
  tileKey: string;
  displayName: string;
  /** Track ids of their camera and screen (null: off), for `attachVideo` and `figures`. */
  camera: number | null;
  screen: number | null;
  muted: boolean;
  speaking: boolean;
  /** It announced end-to-end encryption. */
  encrypts: boolean;
  /** Its media key is held: what it sends is end-to-end encrypted and can be opened here. */
  secured: boolean;
  /** The safety number this page shares with it (compare it out of band), once its identity arrived. */
  safetyNumber: string | null;
  /** It lost its connection and may come back (its tile is kept meanwhile). */
  reconnecting: boolean;
  /** It joined as a host of the meeting. */
  host: boolean;
}

/** Every other participant at `now`: present ones (less those superseded or held back), then ghosts. */
export function peerViews(
  roster: Roster,
  keys: KeyManager,
  continuity: TileContinuity,
  speakers: SpeakerDetector,
  now: number,
): PeerView[] {
  const ghosts = continuity.ghosts(now);
  const shown = roster.participants().filter((peer) => !continuity.isSuperseded(peer.participantId));
  const present = shown
    .filter((peer) => {
      const proven = keys.provenIdentity(peer.participantId) !== null;
      const nameShown =
        ghosts.some((ghost) => ghost.displayName === peer.displayName) ||
        shown.some((other) => other !== peer && other.displayName === peer.displayName);
      return !continuity.waiting(peer.participantId, peer.e2ee, proven, nameShown, now);
    })
    .map((peer) => ({
      participantId: peer.participantId,
      tileKey: continuity.tileKey(peer.participantId),
      displayName: peer.displayName,
      camera: peer.camera?.trackId ?? null,
      screen: peer.screen?.trackId ?? null,
      muted: peer.audio === null,
      speaking: speakers.isSpeaking(peer.participantId, now),
      encrypts: peer.e2ee,
      secured: peer.e2ee && keys.hasKeyFrom(peer.participantId),
      safetyNumber: keys.safetyNumber(peer.participantId),
      reconnecting: false,
      host: peer.role === Role.HOST,
    }));
  const kept = ghosts.map((ghost) => ({
    participantId: ghost.participantId,
    tileKey: ghost.tileKey,
    displayName: ghost.displayName,
    camera: ghost.camera,
    screen: null,
    muted: true,
    speaking: false,
    encrypts: true,
    secured: false,
    safetyNumber: null,
    reconnecting: true,
    host: false,
  }));
  return [...present, ...kept];
}
