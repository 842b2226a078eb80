/**
 * Who is speaking, from the audio levels in media frame headers (RFC 6464: -dBov and a voice flag); free of
 * I/O and clocks (callers pass `nowMs`, a monotonic clock).
 *
 * A participant is *speaking* while voice-flagged packets keep arriving (the last one within `windowMs`).
 * The *active speaker* is the loudest of those, and it is sticky: it changes only when the current one has
 * stopped speaking, or when someone else is louder by `switchDb` and the current one has held the floor for
 * `holdMs`, so the highlight does not flicker between two people talking over each other. After everyone
 * goes quiet the last active speaker stays active.
 */

export interface SpeakerConfig {
  windowMs: number;
  holdMs: number;
  switchDb: number;
  /** Weight of a new packet in the smoothed loudness (exponential moving average). */
  smoothing: number;
}

export const DEFAULT_SPEAKER: SpeakerConfig = { windowMs: 400, holdMs: 1500, switchDb: 6, smoothing: 0.2 };

interface Voice {
  lastVoiceMs: number;
  /** Smoothed loudness in dB above silence (127 - level), over voice packets only. */
  loudness: number;
}

export class SpeakerDetector {
  private readonly voices = new Map<string, Voice>();
  private current: string | null = null;
  private since = 0;

  constructor(private readonly config: SpeakerConfig = DEFAULT_SPEAKER) {}

  /** One audio packet's level from `participantId`. */
  level(participantId: string, levelDbov: number, voice: boolean, nowMs: number): void {
    if (!voice) return;
    const loudness = 127 - levelDbov;
    const known = this.voices.get(participantId);
    if (known === undefined || nowMs - known.lastVoiceMs > this.config.windowMs) {
      this.voices.set(participantId, { lastVoiceMs: nowMs, loudness });
      return;
    }
    known.lastVoiceMs = nowMs;
    known.loudness += this.config.smoothing * (loudness - known.loudness);
  }

  /** The participant left: never speaking, never active. */
  forget(participantId: string): void {
    this.voices.delete(participantId);
    if (this.current === participantId) this.current = null;
  }

  isSpeaking(participantId: string, nowMs: number): boolean {
    const voice = this.voices.get(participantId);
    return voice !== undefined && nowMs - voice.lastVoiceMs <= this.config.windowMs;
  }

  /** The active speaker at `nowMs` (updates the sticky choice), or null before anyone spoke. */
  active(nowMs: number): string | null {
    let loudest: string | null = null;
    let loudestDb = -Infinity;
    for (const [participantId, voice] of this.voices) {
      if (nowMs - voice.lastVoiceMs <= this.config.windowMs && voice.loudness > loudestDb) {
        loudest = participantId;
        loudestDb = voice.loudness;
      }
    }
    if (loudest === null || loudest === this.current) return this.current;
    const current = this.current === null ? undefined : this.voices.get(this.current);
    const currentSpeaking = current !== undefined && nowMs - current.lastVoiceMs <= this.config.windowMs;
    const overtaken =
      current !== undefined &&
      loudestDb - current.loudness >= this.config.switchDb &&
      nowMs - this.since >= this.config.holdMs;
    if (!currentSpeaking || overtaken) {
      this.current = loudest;
      this.since = nowMs;
    }
    return this.current;
  }
}
