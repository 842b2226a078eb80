/** VideoReceiver and AudioReceiver with scripted decoders standing in for WebCodecs. */
import { describe, expect, it } from "vitest";

import { decodeFrame, encodeFrame, type FrameHeader } from "../src/lib/frame";
import {
  AudioReceiver,
  KEYFRAME_RETRY_MS,
  MAX_DECODE_QUEUE,
  VideoReceiver,
  type ChunkInit,
  type DecoderCallbacks,
  type DecoderPort,
  type Picture,
  type Sound,
} from "../src/lib/receiver";
import vectors from "./vectors/synthetic.json";
import { fromHex } from "./hex";

/** A decoder that outputs one picture per chunk, or fails on the chunks the test marks. */
class ScriptedDecoder implements DecoderPort {
  readonly chunks: ChunkInit[] = [];
  decodeQueueSize = 0;
  closed = false;
  /** Payload first bytes that make the decoder report an error (asynchronously, like WebCodecs). */
  failOn = new Set<number>();
  throwOn = new Set<number>();

  constructor(private readonly callbacks: DecoderCallbacks<Picture & Sound>) {}

  decode(chunk: ChunkInit): void {
    if (this.closed) throw new Error("InvalidStateError: closed");
    const marker = chunk.data[0] ?? 0;
    if (this.throwOn.has(marker)) throw new Error("DataError: bad chunk");
    this.chunks.push(chunk);
    if (this.failOn.has(marker)) {
      this.closed = true;
      this.callbacks.error(new Error("EncodingError: decoding failed"));
      return;
    }
    this.callbacks.output({
      displayWidth: 640,
      displayHeight: 360,
      timestamp: chunk.timestamp,
      close: () => undefined,
    });
  }

  close(): void {
    if (this.closed) throw new Error("InvalidStateError: already closed");
    this.closed = true;
  }
}

function harness() {
  const decoders: ScriptedDecoder[] = [];
  const log: string[] = [];
  let now = 0;
  let keyframeRequests = 0;
  const failNext = { failOn: new Set<number>(), throwOn: new Set<number>() };
  const receiver = new VideoReceiver<Picture>(
    "vp8",
    "alice",
    (codec, callbacks) => {
      expect(codec).toBe("vp8");
      const decoder = new ScriptedDecoder(callbacks);
      decoder.failOn = failNext.failOn;
      decoder.throwOn = failNext.throwOn;
      decoders.push(decoder);
      return decoder;
    },
    {
      decoded: (width, height, captureUs, synthetic) =>
        log.push(`decoded ${width}x${height} @${captureUs}${synthetic ? " synthetic" : ""}`),
      stalled: (reason) => log.push(`stalled: ${reason}`),
    },
    () => {
      keyframeRequests++;
    },
    () => now,
  );
  return {
    receiver,
    decoders,
    log,
    failNext,
    keyframeRequests: () => keyframeRequests,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function frame(objectSeq: number, marker = 0, group = 1): { header: FrameHeader; payload: Uint8Array } {
  const bytes = encodeFrame(
    { trackId: 3, group, objectSeq, captureUs: BigInt(1000 + objectSeq), keyframe: objectSeq === 0 },
    Uint8Array.of(marker, 1, 2, 3),
  );
  return decodeFrame(bytes);
}

describe("VideoReceiver", () => {
  it("waits for a keyframe, asking for one, then decodes the group", () => {
    const { receiver, decoders, log, keyframeRequests } = harness();
    const delta = frame(5);
    receiver.push(delta.header, delta.payload);
    expect(decoders).toHaveLength(0);
    expect(keyframeRequests()).toBe(1);
    for (const seq of [0, 1, 2]) {
      const { header, payload } = frame(seq);
      receiver.push(header, payload);
    }
    expect(decoders).toHaveLength(1);
    expect(decoders[0]?.chunks.map((chunk) => chunk.type)).toEqual(["key", "delta", "delta"]);
    expect(log).toEqual(["decoded 640x360 @1000", "decoded 640x360 @1001", "decoded 640x360 @1002"]);
  });

  it("after a lost frame (refused end to end) drops deltas and asks for a keyframe, then resumes", () => {
    const { receiver, decoders, log, keyframeRequests } = harness();
    for (const seq of [0, 1]) {
      const { header, payload } = frame(seq);
      receiver.push(header, payload);
    }
    receiver.lost();
    const delta = frame(3);
    receiver.push(delta.header, delta.payload);
    expect(keyframeRequests()).toBe(1);
    const key = frame(0, 0, 2);
    receiver.push(key.header, key.payload);
    expect(decoders).toHaveLength(1);
    expect(decoders[0]?.chunks.map((chunk) => chunk.type)).toEqual(["key", "delta", "key"]);
    expect(log).toHaveLength(3);
  });

  it("recovers from a decoder error: new decoder, keyframe request, deltas dropped until the keyframe", () => {
    const { receiver, decoders, log, failNext, keyframeRequests } = harness();
    failNext.failOn.add(9);
    for (const [seq, marker] of [
      [0, 0],
      [1, 9],
      [2, 0],
      [3, 0],
    ] as const) {
      const { header, payload } = frame(seq, marker);
      receiver.push(header, payload);
    }
    expect(log).toEqual(["decoded 640x360 @1000", "stalled: decoder error: EncodingError: decoding failed"]);
    expect(keyframeRequests()).toBe(1);
    const key = frame(0, 0, 2);
    receiver.push(key.header, key.payload);
    const delta = frame(1, 0, 2);
    receiver.push(delta.header, delta.payload);
    expect(decoders).toHaveLength(2);
    expect(decoders[0]?.closed).toBe(true);
    expect(decoders[1]?.chunks.map((chunk) => chunk.type)).toEqual(["key", "delta"]);
    expect(log.slice(2)).toEqual(["decoded 640x360 @1000", "decoded 640x360 @1001"]);
  });

  it("treats decode() throwing like a decoder error", () => {
    const { receiver, decoders, log, failNext, keyframeRequests } = harness();
    failNext.throwOn.add(7);
    const key = frame(0, 7);
    receiver.push(key.header, key.payload);
    expect(log).toEqual(["stalled: decoder error: DataError: bad chunk"]);
    expect(keyframeRequests()).toBe(1);
    expect(decoders[0]?.closed).toBe(true);
  });

  it("asks for a keyframe at most once per retry interval while it waits", () => {
    const { receiver, keyframeRequests, advance } = harness();
    for (let seq = 1; seq <= 30; seq++) {
      const { header, payload } = frame(seq);
      receiver.push(header, payload);
      advance(KEYFRAME_RETRY_MS / 10);
    }
    expect(keyframeRequests()).toBe(3);
  });

  it("skips to the next keyframe when the decoder falls behind", () => {
    const { receiver, decoders, log, keyframeRequests } = harness();
    const key = frame(0);
    receiver.push(key.header, key.payload);
    const decoder = decoders[0];
    if (decoder === undefined) throw new Error("no decoder");
    decoder.decodeQueueSize = MAX_DECODE_QUEUE + 1;
    const late = frame(1);
    receiver.push(late.header, late.payload);
    expect(log.at(-1)).toBe("stalled: the decoder fell behind");
    expect(keyframeRequests()).toBe(1);
    decoder.decodeQueueSize = 0;
    const next = frame(2);
    receiver.push(next.header, next.payload);
    expect(decoder.chunks).toHaveLength(1);
  });

  it("stalls without throwing when no decoder can be made for the codec", () => {
    const log: string[] = [];
    const receiver = new VideoReceiver<Picture>(
      "vp8",
      "alice",
      () => {
        throw new Error("NotSupportedError: codec");
      },
      { decoded: () => log.push("decoded"), stalled: (reason) => log.push(reason) },
      () => undefined,
    );
    const { header, payload } = frame(0);
    receiver.push(header, payload);
    expect(log).toEqual(["no decoder for vp8: NotSupportedError: codec"]);
  });

  it("draws the bot's synthetic frames as test cards without a decoder", () => {
    const vector = vectors.frames.find((candidate) => candidate.name === "video delta frame");
    if (vector === undefined) throw new Error("no vector");
    const cards: string[] = [];
    const decoded: boolean[] = [];
    const receiver = new VideoReceiver<Picture>(
      "vp8",
      vector.participant_id,
      () => {
        throw new Error("no decoder expected");
      },
      { decoded: (_w, _h, _c, synthetic) => decoded.push(synthetic), stalled: () => undefined },
      () => undefined,
    );
    receiver.attach({ draw: () => undefined, drawTestCard: (group, seq) => cards.push(`${group}/${seq}`) });
    const { header, payload } = decodeFrame(fromHex(vector.hex));
    receiver.push(header, payload);
    expect(cards).toEqual([`${vector.group}/${vector.object_seq}`]);
    expect(decoded).toEqual([true]);
  });
});

describe("AudioReceiver", () => {
  function audio(objectSeq: number): { header: FrameHeader; payload: Uint8Array } {
    return decodeFrame(
      encodeFrame(
        { trackId: 4, group: 0, objectSeq, captureUs: BigInt(objectSeq) },
        Uint8Array.of(0x78, objectSeq),
      ),
    );
  }

  it("decodes packets in sequence order once the jitter buffer releases them", () => {
    const decoders: ScriptedDecoder[] = [];
    const played: number[] = [];
    const receiver = new AudioReceiver<Sound>(
      "opus",
      "bob",
      (_codec, callbacks) => {
        const decoder = new ScriptedDecoder(callbacks);
        decoders.push(decoder);
        return decoder;
      },
      { decoded: () => undefined, stalled: () => undefined },
      { play: (sound) => played.push(sound.timestamp) },
    );
    for (const seq of [10, 12, 11]) {
      const { header, payload } = audio(seq);
      receiver.push(header, payload, 0);
    }
    receiver.tick(59);
    expect(played).toEqual([]);
    receiver.tick(100);
    expect(played).toEqual([10, 11, 12]);
  });

  it("rebuilds a failed decoder for the next packet", () => {
    const decoders: ScriptedDecoder[] = [];
    const stalls: string[] = [];
    const receiver = new AudioReceiver<Sound>(
      "opus",
      "bob",
      (_codec, callbacks) => {
        const decoder = new ScriptedDecoder(callbacks);
        if (decoders.length === 0) decoder.failOn.add(0x78);
        decoders.push(decoder);
        return decoder;
      },
      { decoded: () => undefined, stalled: (reason) => stalls.push(reason) },
      { play: () => undefined },
    );
    for (const seq of [0, 1]) {
      const { header, payload } = audio(seq);
      receiver.push(header, payload, 0);
    }
    receiver.tick(60);
    receiver.tick(80);
    expect(stalls).toEqual(["audio decoder error: EncodingError: decoding failed"]);
    expect(decoders).toHaveLength(2);
    expect(decoders[1]?.chunks).toHaveLength(1);
  });

  it("counts the bot's synthetic audio without decoding it", () => {
    const vector = vectors.frames.find((candidate) => candidate.name === "audio packet");
    if (vector === undefined) throw new Error("no vector");
    const decoded: boolean[] = [];
    const receiver = new AudioReceiver<Sound>(
      "opus",
      vector.participant_id,
      () => {
        throw new Error("no decoder expected");
      },
      { decoded: (_w, _h, _c, synthetic) => decoded.push(synthetic), stalled: () => undefined },
      { play: () => undefined },
    );
    const { header, payload } = decodeFrame(fromHex(vector.hex));
    receiver.push(header, payload, 0);
    receiver.tick(1000);
    expect(decoded).toEqual([true]);
  });
});
