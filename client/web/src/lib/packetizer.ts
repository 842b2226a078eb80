/**
 * Turns encoder output into media frames (docs/FRAME-FORMAT.md), free of I/O.
 *
 * Video: each keyframe opens a new group (one unidirectional stream per group, the keyframe at object
 * sequence 0); delta frames before the first keyframe are dropped because nobody could decode them.
 * Audio: one group (0) for the whole publication and a packet counter as object sequence.
 */
import { encodeFrame, FrameError, MAX_U32, SILENCE } from "./frame";

export interface VideoPacket {
  /** The frame's bytes, header included. */
  bytes: Uint8Array;
  /** True when this frame opens a new group, so the sender must start a new stream for it. */
  newGroup: boolean;
}

export class VideoPacketizer {
  private group = -1;
  private objectSeq = 0;

  constructor(
    private readonly trackId: number,
    private readonly maxPayload: number,
  ) {}

  /** Returns the packet, or null for a delta frame that has no group to join. */
  packetize(keyframe: boolean, captureUs: bigint, payload: Uint8Array): VideoPacket | null {
    checkPayload(payload, this.maxPayload);
    if (keyframe) {
      this.group = this.group >= MAX_U32 ? 0 : this.group + 1;
      this.objectSeq = 0;
    } else if (this.group < 0) {
      return null;
    } else {
      this.objectSeq++;
    }
    const fields = {
      trackId: this.trackId,
      group: this.group,
      objectSeq: this.objectSeq,
      captureUs,
      keyframe,
    };
    return { bytes: encodeFrame(fields, payload), newGroup: keyframe };
  }
}

export class AudioPacketizer {
  private seq = 0;

  constructor(
    private readonly trackId: number,
    private readonly maxPayload: number,
  ) {}

  packetize(captureUs: bigint, payload: Uint8Array, levelDbov = SILENCE, voiceActivity = false): Uint8Array {
    checkPayload(payload, this.maxPayload);
    const objectSeq = this.seq;
    this.seq = this.seq >= MAX_U32 ? 0 : this.seq + 1;
    const fields = { trackId: this.trackId, group: 0, objectSeq, captureUs, levelDbov, voiceActivity };
    return encodeFrame(fields, payload);
  }
}

/**
 * Audio level in -dBov (RFC 6464: 0 loudest, 127 silence) of samples in -1..1, and whether it counts as
 * voice: a plain level threshold, enough to pick an active speaker.
 */
export function audioLevel(
  samples: Float32Array,
  voiceThresholdDbov = 50,
): { levelDbov: number; voice: boolean } {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = samples.length === 0 ? 0 : Math.sqrt(sum / samples.length);
  const dbov = rms <= 0 ? SILENCE : Math.round(-20 * Math.log10(Math.min(rms, 1)));
  const levelDbov = Math.min(SILENCE, Math.max(0, dbov));
  return { levelDbov, voice: levelDbov < voiceThresholdDbov };
}

function checkPayload(payload: Uint8Array, maxPayload: number): void {
  if (payload.length > maxPayload) {
    throw new FrameError(`payload of ${payload.length} bytes is over the limit of ${maxPayload}`);
  }
}
