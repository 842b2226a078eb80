/**
 * Recognises the synthetic media that `darktower bot` publishes (client/python/media.py), so a meeting with
 * a bot in it shows the bot as a live test card instead of feeding its payloads to a codec.
 *
 * A synthetic payload is not a codec bitstream: it opens with an echo of who sent it and where it belongs
 * (magic `DTs1`, kind, publisher id, track, group, sequence, capture time), followed by deterministic
 * filler. A payload counts as synthetic only when that echo agrees with the frame header it arrived under
 * and with the publisher the track belongs to, which a real VP8/Opus payload never does (a VP8 keyframe
 * carries its start code where the echo has its kind and id bytes). test/vectors/synthetic.json, written by
 * the Python side, keeps the two in step.
 */
import type { FrameHeader } from "./frame";

const MAGIC = [0x44, 0x54, 0x73, 0x31]; // "DTs1"
const KIND_CODES = { audio: 1, video: 2 } as const;
const HEAD_BYTES = 6; // magic, kind, id length
const TAIL_BYTES = 20; // track, group, sequence (u32 each), capture time (u64)

export type SyntheticKind = keyof typeof KIND_CODES;

/** What a synthetic payload says about itself. */
export interface SyntheticEcho {
  kind: SyntheticKind;
  participantId: string;
  trackId: number;
  group: number;
  objectSeq: number;
  captureUs: bigint;
}

/** Reads a payload's echo, or null when it is not a synthetic payload at all. */
export function readEcho(payload: Uint8Array): SyntheticEcho | null {
  if (payload.length < HEAD_BYTES || MAGIC.some((byte, i) => payload[i] !== byte)) return null;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const code = view.getUint8(4);
  const kind = code === KIND_CODES.audio ? "audio" : code === KIND_CODES.video ? "video" : null;
  const idLength = view.getUint8(5);
  const tail = HEAD_BYTES + idLength;
  if (kind === null || payload.length < tail + TAIL_BYTES) return null;
  let participantId: string;
  try {
    participantId = new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(HEAD_BYTES, tail));
  } catch {
    return null;
  }
  return {
    kind,
    participantId,
    trackId: view.getUint32(tail),
    group: view.getUint32(tail + 4),
    objectSeq: view.getUint32(tail + 8),
    captureUs: view.getBigUint64(tail + 12),
  };
}

/**
 * True when `payload`, received under `header` on a `kind` track of `publisherId`, is synthetic media
 * from that publisher: its echo matches the header and the track's owner field for field.
 */
export function isSynthetic(
  header: FrameHeader,
  payload: Uint8Array,
  kind: SyntheticKind,
  publisherId: string,
): boolean {
  const echo = readEcho(payload);
  return (
    echo !== null &&
    echo.kind === kind &&
    echo.participantId === publisherId &&
    echo.trackId === header.trackId &&
    echo.group === header.group &&
    echo.objectSeq === header.objectSeq &&
    echo.captureUs === header.captureUs
  );
}
