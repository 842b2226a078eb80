/**
 * The binary media frame format (docs/FRAME-FORMAT.md): a fixed 28-byte header, then an opaque payload.
 *
 * This is the TypeScript twin of `proto/frame.py`; test/vectors/frames.json (written by the Python side)
 * keeps the two byte-for-byte identical. Every way parsing can fail throws `FrameError` and nothing else.
 */

export const VERSION = 1;
export const FLAG_KEYFRAME = 0x01;
export const HEADER_SIZE = 28;
export const MAX_U32 = 0xffff_ffff;
export const MAX_U64 = 0xffff_ffff_ffff_ffffn;
/** Audio level of silence (and of every video frame): 127 -dBov, as in RFC 6464. */
export const SILENCE = 127;

const KNOWN_FLAGS = FLAG_KEYFRAME;
const VOICE_ACTIVITY = 0x80;

/** A media frame (or the bytes claimed to be one) is malformed; the message says which field and why. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

/** The fields a sender chooses; `encodeFrame` derives the wire bytes (flags, layers, level) from them. */
export interface FrameFields {
  trackId: number;
  group: number;
  objectSeq: number;
  /** Capture time in microseconds since the Unix epoch, on the publisher's clock. */
  captureUs: bigint;
  keyframe?: boolean;
  spatialLayer?: number;
  temporalLayer?: number;
  /** Level in -dBov: 0 loudest, 127 silence. */
  levelDbov?: number;
  voiceActivity?: boolean;
}

/** A parsed header: the raw wire fields plus the decoded views of `flags`, `layers` and `audioLevel`. */
export interface FrameHeader {
  version: number;
  flags: number;
  layers: number;
  audioLevel: number;
  trackId: number;
  group: number;
  captureUs: bigint;
  objectSeq: number;
  payloadLength: number;
  keyframe: boolean;
  spatialLayer: number;
  temporalLayer: number;
  levelDbov: number;
  voiceActivity: boolean;
}

/** One complete frame from a stream: its header and its bytes, header included (relayed unchanged). */
export interface StreamFrame {
  header: FrameHeader;
  bytes: Uint8Array;
}

/** Serialises one frame. Out-of-range fields throw `FrameError` naming the field. */
export function encodeFrame(fields: FrameFields, payload: Uint8Array): Uint8Array {
  const spatialLayer = fields.spatialLayer ?? 0;
  const temporalLayer = fields.temporalLayer ?? 0;
  const levelDbov = fields.levelDbov ?? SILENCE;
  checkRange("track_id", fields.trackId, MAX_U32);
  checkRange("group", fields.group, MAX_U32);
  checkRange("object_seq", fields.objectSeq, MAX_U32);
  if (fields.captureUs < 0n || fields.captureUs > MAX_U64) {
    throw new FrameError(`capture_us ${fields.captureUs.toString()} is outside 0..${MAX_U64.toString()}`);
  }
  checkRange("spatial_layer", spatialLayer, 15);
  checkRange("temporal_layer", temporalLayer, 15);
  checkRange("level_dbov", levelDbov, 127);
  const frame = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, VERSION);
  view.setUint8(1, fields.keyframe === true ? FLAG_KEYFRAME : 0);
  view.setUint8(2, (spatialLayer << 4) | temporalLayer);
  view.setUint8(3, levelDbov | (fields.voiceActivity === true ? VOICE_ACTIVITY : 0));
  view.setUint32(4, fields.trackId);
  view.setUint32(8, fields.group);
  view.setBigUint64(12, fields.captureUs);
  view.setUint32(20, fields.objectSeq);
  view.setUint32(24, payload.length);
  frame.set(payload, HEADER_SIZE);
  return frame;
}

/**
 * `frame` (a whole, valid frame) with its payload replaced by `payload`: the same first 24 header bytes, a
 * new `payload_length`. How an end-to-end encrypting publisher swaps the plaintext for its ciphertext.
 */
export function replacePayload(frame: Uint8Array, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_U32) throw new FrameError(`payload of ${payload.length} bytes is too long`);
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  out.set(frame.subarray(0, HEADER_SIZE));
  new DataView(out.buffer).setUint32(24, payload.length);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Parses and validates the header at `offset`; the payload may not have arrived yet. */
export function parseHeader(data: Uint8Array, offset = 0, maxPayload = MAX_U32): FrameHeader {
  const available = data.length - offset;
  if (available < HEADER_SIZE) {
    throw new FrameError(`truncated header: ${available} of ${HEADER_SIZE} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset + offset, HEADER_SIZE);
  const version = view.getUint8(0);
  const flags = view.getUint8(1);
  const layers = view.getUint8(2);
  const audioLevel = view.getUint8(3);
  const payloadLength = view.getUint32(24);
  if (version !== VERSION) {
    throw new FrameError(`unsupported frame version ${version} (this client speaks ${VERSION})`);
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new FrameError(`reserved flag bits set: 0x${flags.toString(16).padStart(2, "0")}`);
  }
  if (payloadLength > maxPayload) {
    throw new FrameError(`payload of ${payloadLength} bytes is over the limit of ${maxPayload}`);
  }
  return {
    version,
    flags,
    layers,
    audioLevel,
    trackId: view.getUint32(4),
    group: view.getUint32(8),
    captureUs: view.getBigUint64(12),
    objectSeq: view.getUint32(20),
    payloadLength,
    keyframe: (flags & FLAG_KEYFRAME) !== 0,
    spatialLayer: layers >> 4,
    temporalLayer: layers & 0x0f,
    levelDbov: audioLevel & 0x7f,
    voiceActivity: (audioLevel & VOICE_ACTIVITY) !== 0,
  };
}

/** Parses a buffer that must hold exactly one frame (a datagram). The payload is a view, not a copy. */
export function decodeFrame(
  data: Uint8Array,
  maxPayload = MAX_U32,
): { header: FrameHeader; payload: Uint8Array } {
  const header = parseHeader(data, 0, maxPayload);
  const end = HEADER_SIZE + header.payloadLength;
  if (data.length !== end) {
    throw new FrameError(`frame is ${data.length} bytes but its header says ${end}`);
  }
  return { header, payload: data.subarray(HEADER_SIZE, end) };
}

/**
 * Sans-I/O parser for frames written back to back on a stream, fed in arbitrary chunks.
 *
 * `feed` returns the frames completed so far; a malformed header throws `FrameError`, after which the
 * reader is unusable (a stream cannot be resynchronised). `close` declares the stream's end.
 */
export class FrameReader {
  private buffer = new Uint8Array(0);

  constructor(private readonly maxPayload = MAX_U32) {}

  feed(chunk: Uint8Array): StreamFrame[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const frames: StreamFrame[] = [];
    let offset = 0;
    while (joined.length - offset >= HEADER_SIZE) {
      const header = parseHeader(joined, offset, this.maxPayload);
      const end = offset + HEADER_SIZE + header.payloadLength;
      if (end > joined.length) break;
      frames.push({ header, bytes: joined.slice(offset, end) });
      offset = end;
    }
    this.buffer = joined.slice(offset);
    return frames;
  }

  /** Bytes of an incomplete frame held back until more data arrives. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Declares the end of the stream; a partial frame left over throws `FrameError`. */
  close(): void {
    if (this.buffer.length > 0) {
      throw new FrameError(`stream ended inside a frame (${this.buffer.length} bytes left over)`);
    }
  }
}

function checkRange(name: string, value: number, maximum: number): void {
  if (!Number.isInteger(value) || value < 0 || value > maximum) {
    throw new FrameError(`${name} ${value} is outside 0..${maximum}`);
  }
}
