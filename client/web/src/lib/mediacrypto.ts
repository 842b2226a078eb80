/**
 * The meeting session's end-to-end encryption: a `KeyManager` (e2ee.ts) wired to signaling and media.
 *
 * The session hands it the roster and the key-related signaling events; it carries out the manager's
 * actions through `CryptoLink` (key messages out, keyframe requests) and tells the session when safety
 * numbers or keys changed, so the view is rebuilt. Publishers seal through `seal` (a `FrameSealer`);
 * received frames of an encrypting participant are opened through `open`, one track's frames in the order
 * they arrived, so the decoder still gets them in order. A frame that cannot be opened resolves null: it
 * was counted (`refusedFrames` on the debug hooks) and must never reach a decoder.
 *
 * The manager, and with it this client's identity key, lives as long as the page's meeting session, across
 * reconnects.
 */
import { describe, debugCounters, recordError } from "./debug";
import { METADATA_SIZE, type KeyAction, type KeyManager } from "./e2ee";
import { HEADER_SIZE, replacePayload } from "./frame";
import type { FrameSealer } from "./publisher";
import { MAX_HEADER_SIZE } from "./sframe";
import type { SignalingEvent } from "./signaling";

/** What the manager needs from the session. */
export interface CryptoLink {
  /** Sends a key message on the current connection (everyone else when `to` is empty). */
  send: (to: readonly string[], payload: Uint8Array) => Promise<void>;
  /** Asks for a keyframe of every video track of `participantId`. */
  requestKeyframe: (participantId: string) => void;
  /** Keys or identities changed (a safety number appeared, a peer proved its identity). */
  changed: () => void;
}

/** Bytes sealing adds to a payload at most: the SFrame header and the 16-byte tag of the AES-GCM suites. */
export const SEAL_OVERHEAD = MAX_HEADER_SIZE + 16;

export class MediaCrypto {
  private readonly chains = new Map<number, Promise<unknown>>();

  constructor(
    readonly keys: KeyManager,
    private readonly link: CryptoLink,
    private readonly clockMs: () => number = () => performance.now(),
  ) {
    const counters = debugCounters();
    counters.refusedFrames = keys.refusedFrames;
    counters.refusedKeyMessages = keys.refusedKeyMessages;
  }

  /** Seals a whole frame: the same header, an SFrame payload; null before the first join. */
  readonly seal: FrameSealer = async (frame) => {
    if (this.keys.sendingKid === null) return null;
    const metadata = frame.subarray(0, METADATA_SIZE);
    const payload = frame.subarray(HEADER_SIZE);
    const sealed = await this.keys.seal(metadata, payload, this.clockMs());
    const counters = debugCounters();
    counters.sealedFrames++;
    counters.sealedBytes += payload.length;
    return replacePayload(frame, sealed);
  };

  /** This client (re)joined as `selfId` with `roster` (participant ids) already there. */
  async joined(selfId: string, roster: readonly string[]): Promise<void> {
    this.chains.clear();
    await this.run(this.keys.joined(selfId, roster, this.clockMs()));
  }

  /** Feeds a signaling event; those that do not concern keys are ignored. */
  event(event: SignalingEvent): void {
    switch (event.case) {
      case "participantJoined":
        if (event.value.participant !== undefined) {
          void this.run(this.keys.participantJoined(event.value.participant.participantId));
        }
        break;
      case "participantLeft":
        void this.run(this.keys.participantLeft(event.value.participantId, this.clockMs()));
        break;
      case "keyMessageReceived":
        void this.run(this.keys.receive(event.value.fromParticipantId, event.value.payload, this.clockMs()));
        break;
      default:
        break;
    }
  }

  /**
   * Opens a frame of track `trackId` sent by `senderId`, after that track's earlier frames; resolves the
   * plaintext payload, or null when it was refused (and counted). `headerBytes`: the frame's header.
   */
  open(
    trackId: number,
    senderId: string,
    video: boolean,
    headerBytes: Uint8Array,
    payload: Uint8Array,
  ): Promise<Uint8Array | null> {
    const previous = this.chains.get(trackId) ?? Promise.resolve();
    const opened = previous.then(() =>
      this.keys.open(senderId, payload, headerBytes.subarray(0, METADATA_SIZE), this.clockMs(), video),
    );
    this.chains.set(
      trackId,
      opened.catch(() => undefined),
    );
    return opened.then(
      (result) => {
        if (result.ok) {
          const counters = debugCounters();
          counters.openedFrames++;
          counters.openedBytes += payload.length;
          return result.plaintext;
        }
        if (result.refusal !== "unknown_key") {
          console.warn(`refused a frame of track ${trackId} from ${senderId}: ${result.reason}`);
        }
        return null;
      },
      (error: unknown) => {
        recordError(`opening a frame of track ${trackId}`, error);
        return null;
      },
    );
  }

  /** The track is gone: its ordering chain is dropped. */
  forgetTrack(trackId: number): void {
    this.chains.delete(trackId);
  }

  private async run(step: Promise<KeyAction[]>): Promise<void> {
    let actions: KeyAction[];
    try {
      actions = await step;
    } catch (error) {
      recordError("end-to-end keys", error);
      return;
    }
    for (const action of actions) {
      if (action.type === "keyframe") {
        this.link.requestKeyframe(action.participantId);
        continue;
      }
      this.link.send(action.to, action.payload).catch((error: unknown) => {
        console.warn(
          `key message to ${action.to.join(", ") || "everyone"} not delivered: ${describe(error)}`,
        );
      });
    }
    debugCounters().safetyNumbers = this.keys.safetyNumbers();
    this.link.changed();
  }
}
