/**
 * Keeps someone's tile in place while they reconnect; free of I/O and clocks (time passed in).
 *
 * A reconnect gives a participant a new participant id: to everyone else the old id leaves
 * (`REASON_DISCONNECTED`) and a new one joins, and a UI keyed by participant id would drop the tile and
 * make a new one. What stays the same is the end-to-end identity key (docs/E2EE.md: a client keeps it
 * across reconnects). So a participant that drops with a proven identity leaves a "ghost" for
 * `RECONNECT_GRACE_MS`, shown as reconnecting in its old place; when a newcomer proves the same identity
 * (a media key from it authenticated, which needs the private key, so nobody can claim another's tile by
 * replaying a public key) it takes over the ghost's tile key. When the server has not noticed the drop yet
 * (a lost network, not a closed session), the old id is still present when the new one proves the same
 * identity: the old one is superseded (hidden, and it leaves no ghost) and the new one takes its tile.
 * Meanwhile an encrypting newcomer whose display name is already shown is held back from the view for up
 * to `PROOF_WAIT_MS`, so the old and new tile never show side by side. Participants that do not encrypt
 * have no identity and keep the old behaviour.
 */

export const RECONNECT_GRACE_MS = 10_000;
export const PROOF_WAIT_MS = 3_000;

/** Someone who dropped and may come back, as the view shows them meanwhile. */
export interface Ghost {
  readonly participantId: string;
  readonly tileKey: string;
  readonly displayName: string;
  /** The camera track they had, so the tile keeps its last picture. */
  readonly camera: number | null;
}

interface Held extends Ghost {
  readonly identity: string;
  readonly untilMs: number;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class TileContinuity {
  private readonly tileKeys = new Map<string, string>();
  private readonly joinedAt = new Map<string, number>();
  private readonly held = new Map<string, Held>();
  /** Proven identities of present participants, hex, by participant id. */
  private readonly identities = new Map<string, string>();
  private readonly superseded = new Set<string>();

  /** The key of the tile that shows `participantId`: its own id unless it took over a ghost's tile. */
  tileKey(participantId: string): string {
    return this.tileKeys.get(participantId) ?? participantId;
  }

  joined(participantId: string, nowMs: number): void {
    this.joinedAt.set(participantId, nowMs);
  }

  /**
   * `participantId` left; one that lost its connection (not one that said goodbye) and had proven
   * `identity` becomes a ghost.
   */
  left(
    participantId: string,
    disconnected: boolean,
    identity: Uint8Array | null,
    displayName: string,
    camera: number | null,
    nowMs: number,
  ): void {
    const tileKey = this.tileKey(participantId);
    this.tileKeys.delete(participantId);
    this.joinedAt.delete(participantId);
    this.identities.delete(participantId);
    if (this.superseded.delete(participantId) || !disconnected || identity === null) return;
    this.held.set(participantId, {
      participantId,
      tileKey,
      displayName,
      camera,
      identity: hex(identity),
      untilMs: nowMs + RECONNECT_GRACE_MS,
    });
  }

  /** `participantId` proved `identity`; returns whether it took over another id's tile. */
  proven(participantId: string, identity: Uint8Array, nowMs: number): boolean {
    this.expire(nowMs);
    const wanted = hex(identity);
    if (this.identities.get(participantId) === wanted) return false;
    this.identities.set(participantId, wanted);
    for (const [oldId, ghost] of this.held) {
      if (ghost.identity !== wanted || oldId === participantId) continue;
      this.held.delete(oldId);
      this.tileKeys.set(participantId, ghost.tileKey);
      return true;
    }
    for (const [oldId, known] of this.identities) {
      if (known !== wanted || oldId === participantId || this.superseded.has(oldId)) continue;
      this.superseded.add(oldId);
      this.tileKeys.set(participantId, this.tileKey(oldId));
      return true;
    }
    return false;
  }

  /** `participantId` came back under a newer id that took over its tile: it is not shown. */
  isSuperseded(participantId: string): boolean {
    return this.superseded.has(participantId);
  }

  /** Ghosts still within their grace period. */
  ghosts(nowMs: number): Ghost[] {
    this.expire(nowMs);
    return [...this.held.values()].map(({ participantId, tileKey, displayName, camera }) => ({
      participantId,
      tileKey,
      displayName,
      camera,
    }));
  }

  /**
   * Whether `participantId`'s tile is held back: it encrypts, joined recently, has not proven its identity
   * yet, and its display name is already shown (`nameShown`: by a ghost or another participant), so it may
   * be that one coming back.
   */
  waiting(
    participantId: string,
    encrypts: boolean,
    proven: boolean,
    nameShown: boolean,
    nowMs: number,
  ): boolean {
    if (!encrypts || proven || !nameShown) return false;
    const since = this.joinedAt.get(participantId);
    return since !== undefined && nowMs - since < PROOF_WAIT_MS;
  }

  /** This client itself reconnected: the ghosts it kept belong to a roster it no longer has. */
  reset(): void {
    this.held.clear();
    this.joinedAt.clear();
    this.identities.clear();
    this.superseded.clear();
  }

  private expire(nowMs: number): void {
    for (const [id, ghost] of this.held) if (nowMs >= ghost.untilMs) this.held.delete(id);
  }
}
