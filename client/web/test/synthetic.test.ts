/** synthetic.ts against frames of the bot's synthetic media written by Python (make_synthetic_vectors.py). */
import { describe, expect, it } from "vitest";

import { decodeFrame, encodeFrame } from "../src/lib/frame";
import { isSynthetic, readEcho } from "../src/lib/synthetic";
import vectors from "./vectors/synthetic.json";
import { fromHex } from "./hex";

type Kind = "audio" | "video";

describe("the bot's synthetic media", () => {
  it.each(vectors.frames)("reads the echo of a $name", (vector) => {
    const { payload } = decodeFrame(fromHex(vector.hex));
    expect(readEcho(payload)).toEqual({
      kind: vector.kind,
      participantId: vector.participant_id,
      trackId: vector.track_id,
      group: vector.group,
      objectSeq: vector.object_seq,
      captureUs: BigInt(vector.capture_us),
    });
  });

  it.each(vectors.frames)("accepts a $name from its publisher only, on its own kind of track", (vector) => {
    const { header, payload } = decodeFrame(fromHex(vector.hex));
    const kind = vector.kind as Kind;
    const other: Kind = kind === "audio" ? "video" : "audio";
    expect(isSynthetic(header, payload, kind, vector.participant_id)).toBe(true);
    expect(isSynthetic(header, payload, kind, `${vector.participant_id}-else`)).toBe(false);
    expect(isSynthetic(header, payload, other, vector.participant_id)).toBe(false);
  });

  it("refuses a synthetic payload moved under another header", () => {
    const vector = vectors.frames[1];
    if (vector === undefined) throw new Error("no vector");
    const { header, payload } = decodeFrame(fromHex(vector.hex));
    for (const moved of [
      { ...header, trackId: header.trackId + 1 },
      { ...header, group: header.group + 1 },
      { ...header, objectSeq: header.objectSeq + 1 },
      { ...header, captureUs: header.captureUs + 1n },
    ]) {
      expect(isSynthetic(moved, payload, "video", vector.participant_id)).toBe(false);
    }
  });

  it("does not take codec bitstreams or short and broken echoes for synthetic media", () => {
    const vp8Keyframe = Uint8Array.of(
      0x50,
      0x42,
      0x00,
      0x9d,
      0x01,
      0x2a,
      0x80,
      0x02,
      0x68,
      0x01,
      ...new Uint8Array(40),
    );
    const opus = Uint8Array.of(0x78, ...new Uint8Array(60).fill(0x11));
    const header = decodeFrame(
      encodeFrame({ trackId: 1, group: 0, objectSeq: 0, captureUs: 0n }, vp8Keyframe),
    ).header;
    expect(readEcho(vp8Keyframe)).toBeNull();
    expect(readEcho(opus)).toBeNull();
    expect(isSynthetic(header, vp8Keyframe, "video", "p")).toBe(false);
    const magicOnly = Uint8Array.of(0x44, 0x54, 0x73, 0x31, 2, 1, 0x41);
    expect(readEcho(magicOnly)).toBeNull();
    const unknownKind = Uint8Array.of(0x44, 0x54, 0x73, 0x31, 3, 0, ...new Uint8Array(20));
    expect(readEcho(unknownKind)).toBeNull();
    const badUtf8 = Uint8Array.of(0x44, 0x54, 0x73, 0x31, 1, 1, 0xff, ...new Uint8Array(20));
    expect(readEcho(badUtf8)).toBeNull();
  });
});
