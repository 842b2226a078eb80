/**
 * What the app exposes on `window` for end-to-end tests, benchmarks and people debugging in the console.
 *
 * `window.__darktower` holds counters (they only ever count up; nothing reads them back to make decisions)
 * and a bounded record of glass-to-glass latencies. `window.__darktowerHooks` holds test hooks that act on
 * the live meeting, such as dropping the transport the way a network failure would.
 */

export type SessionState = "idle" | "connecting" | "joined" | "reconnecting" | "left" | "failed";

export interface DarkTowerDebug {
  state: SessionState;
  participantId: string | null;
  /** The codec this page publishes video with (after `isConfigSupported` fallbacks). */
  videoCodec: string | null;
  /** Display names of everyone this page has met, by participant id. */
  names: Record<string, string>;
  sentVideoFrames: number;
  sentAudioFrames: number;
  droppedCameraFrames: number;
  droppedAudioPackets: number;
  abandonedGroups: number;
  /** Video frames out of the decoder (or, for the bot's synthetic media, drawn as test cards), by publisher. */
  decodedVideoFrames: Record<string, number>;
  /** Audio packets out of the decoder (or, for synthetic media, verified and muted), by publisher. */
  decodedAudioFrames: Record<string, number>;
  /** The part of the two counts above that was the bot's synthetic media, by publisher. */
  syntheticFrames: Record<string, number>;
  /** Decoders that failed or fell behind and waited for a keyframe. */
  decoderStalls: number;
  keyframeRequests: number;
  /** Malformed media or signaling from the server, dropped. */
  droppedGarbage: number;
  reconnects: number;
  /** Frames this page sealed with SFrame before sending, and their plaintext payload bytes. */
  sealedFrames: number;
  sealedBytes: number;
  /** Received frames this page opened (SFrame payload bytes), the ones it refused not included. */
  openedFrames: number;
  openedBytes: number;
  /** Received frames that could not be opened (never decoded), by why: see `FrameRefusal` in e2ee.ts. */
  refusedFrames: Record<string, number>;
  /** Key messages refused, by why: see `KeyMessageRefusal` in keymessages.ts. */
  refusedKeyMessages: Record<string, number>;
  /** The safety number this page shares with each participant whose identity key it has, by id. */
  safetyNumbers: Record<string, string>;
  /** The last glass-to-glass video latencies in milliseconds (capture to decoded frame), by publisher. */
  latencyMs: Record<string, number[]>;
  errors: string[];
}

export interface DarkTowerHooks {
  /** Closes the WebTransport session without leaving, as a lost network would; the app reconnects. */
  killTransport: () => void;
  /**
   * Sends the camera's next keyframe with its first bytes scrambled and asks for one at once, so every
   * receiver's decoder fails on it and has to recover through a keyframe request.
   */
  corruptNextKeyframe: () => void;
  /** Flips the last byte (the SFrame tag) of the camera's next sealed frame: receivers must refuse it. */
  tamperNextFrame: () => void;
}

declare global {
  interface Window {
    __darktower?: DarkTowerDebug;
    __darktowerHooks?: DarkTowerHooks;
  }
}

/** Latency samples kept per publisher. */
const LATENCY_SAMPLES = 3000;

export function debugCounters(): DarkTowerDebug {
  window.__darktower ??= {
    state: "idle",
    participantId: null,
    videoCodec: null,
    names: {},
    sentVideoFrames: 0,
    sentAudioFrames: 0,
    droppedCameraFrames: 0,
    droppedAudioPackets: 0,
    abandonedGroups: 0,
    decodedVideoFrames: {},
    decodedAudioFrames: {},
    syntheticFrames: {},
    decoderStalls: 0,
    keyframeRequests: 0,
    droppedGarbage: 0,
    reconnects: 0,
    sealedFrames: 0,
    sealedBytes: 0,
    openedFrames: 0,
    openedBytes: 0,
    refusedFrames: {},
    refusedKeyMessages: {},
    safetyNumbers: {},
    latencyMs: {},
    errors: [],
  };
  return window.__darktower;
}

export function countFor(counters: Record<string, number>, key: string): void {
  counters[key] = (counters[key] ?? 0) + 1;
}

export function recordLatency(publisherId: string, latencyMs: number): void {
  const samples = (debugCounters().latencyMs[publisherId] ??= []);
  samples.push(latencyMs);
  if (samples.length > LATENCY_SAMPLES) samples.splice(0, samples.length - LATENCY_SAMPLES);
}

export function setHooks(hooks: DarkTowerHooks | null): void {
  if (hooks === null) delete window.__darktowerHooks;
  else window.__darktowerHooks = hooks;
}

/** Something went wrong that the app could not handle: counted, and logged as an error. */
export function recordError(context: string, error: unknown): void {
  const message = `${context}: ${describe(error)}`;
  debugCounters().errors.push(message);
  console.error(message);
}

/** Garbage from the server that was dropped: counted, and logged as a warning. */
export function recordGarbage(context: string, error: unknown): void {
  debugCounters().droppedGarbage++;
  console.warn(`dropped ${context}: ${describe(error)}`);
}

export function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
