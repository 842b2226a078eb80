/**
 * Length-delimited framing of the signaling stream (proto/signaling.proto): a protobuf varint length, then
 * that many bytes of one message. The twin of `proto/signaling.py`; every failure throws `SignalingError`.
 */

const MAX_VARINT_BYTES = 5; // a length prefix never exceeds 32 bits

/** Bytes on the signaling stream are not a valid length-delimited message of the expected type. */
export class SignalingError extends Error {
  override readonly name = "SignalingError";
}

export function encodeVarint(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new SignalingError(`length ${value} cannot be a varint prefix`);
  }
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Uint8Array.from(out);
}

/** Prefixes an encoded message body with its length. */
export function encodeDelimited(body: Uint8Array): Uint8Array {
  const prefix = encodeVarint(body.length);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

/**
 * Sans-I/O splitter of a byte stream into message bodies. A prefix over `maxMessageBytes` or longer than
 * five bytes throws `SignalingError`; the stream cannot be resynchronised after that, so the caller closes it.
 */
export class DelimitedReader {
  private buffer = new Uint8Array(0);

  constructor(private readonly maxMessageBytes: number) {}

  feed(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    const bodies: Uint8Array[] = [];
    let offset = 0;
    for (;;) {
      const prefix = readVarint(joined, offset);
      if (prefix === null) break;
      const [length, start] = prefix;
      if (length > this.maxMessageBytes) {
        throw new SignalingError(`message of ${length} bytes is over the limit of ${this.maxMessageBytes}`);
      }
      if (start + length > joined.length) break;
      bodies.push(joined.slice(start, start + length));
      offset = start + length;
    }
    this.buffer = joined.slice(offset);
    return bodies;
  }

  /** Bytes of an incomplete message held back until more data arrives. */
  get buffered(): number {
    return this.buffer.length;
  }
}

/** Returns [value, position after it], or null when the prefix has not fully arrived. */
function readVarint(buffer: Uint8Array, position: number): [number, number] | null {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const byte = buffer[position + i];
    if (byte === undefined) return null;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, position + i + 1];
  }
  throw new SignalingError(`length prefix longer than ${MAX_VARINT_BYTES} bytes`);
}
