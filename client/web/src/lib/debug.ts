/**
 * Counters the app keeps on `window.__darktower`, for end-to-end tests and for people debugging in the
 * console. They only ever count up; nothing reads them back to make decisions.
 */

export interface DarkTowerDebug {
  state: "idle" | "connecting" | "joined" | "closed" | "failed";
  participantId: string | null;
  sentVideoFrames: number;
  sentAudioFrames: number;
  /** Decoded video frames by publishing participant id. */
  decodedVideoFrames: Record<string, number>;
  decodedAudioFrames: number;
  errors: string[];
}

declare global {
  interface Window {
    __darktower?: DarkTowerDebug;
  }
}

export function debugCounters(): DarkTowerDebug {
  window.__darktower ??= {
    state: "idle",
    participantId: null,
    sentVideoFrames: 0,
    sentAudioFrames: 0,
    decodedVideoFrames: {},
    decodedAudioFrames: 0,
    errors: [],
  };
  return window.__darktower;
}

export function recordError(context: string, error: unknown): void {
  const message = `${context}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
  debugCounters().errors.push(message);
  console.error(message);
}
