/**
 * Frames encoded by frame.ts, checked in as test/vectors/frames-ts.json for the Python side
 * (tests/web/test_frame_vectors.py decodes each one with darktower.proto.frame).
 *
 * This test fails when the checked-in file is not what frame.ts writes today; `npm run vectors` rewrites it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import { FrameReader, MAX_U32, MAX_U64, encodeFrame, type FrameFields } from "../src/lib/frame";
import { toHex } from "./hex";

const PATH = fileURLToPath(new URL("./vectors/frames-ts.json", import.meta.url));

const CASES: [string, FrameFields, Uint8Array][] = [
  [
    "silent audio",
    { trackId: 11, group: 0, objectSeq: 1, captureUs: 1n },
    new Uint8Array([0xfc, 0xff, 0xfe]),
  ],
  [
    "loud speech",
    {
      trackId: 12,
      group: 0,
      objectSeq: 99_999,
      captureUs: 1_767_225_600_020_000n,
      levelDbov: 3,
      voiceActivity: true,
    },
    new Uint8Array(60).fill(0x5a),
  ],
  [
    "vp8 keyframe",
    { trackId: 13, group: 1, objectSeq: 0, captureUs: 1_767_225_600_033_333n, keyframe: true },
    new Uint8Array([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]),
  ],
  [
    "layered delta",
    { trackId: 13, group: 1, objectSeq: 7, captureUs: 2n ** 53n + 1n, spatialLayer: 1, temporalLayer: 2 },
    new Uint8Array(256).map((_, i) => i),
  ],
  [
    "maxima",
    {
      trackId: MAX_U32,
      group: MAX_U32,
      objectSeq: MAX_U32,
      captureUs: MAX_U64,
      keyframe: true,
      spatialLayer: 15,
      temporalLayer: 15,
      levelDbov: 0,
      voiceActivity: true,
    },
    new Uint8Array([1]),
  ],
];

function render(): string {
  const valid = CASES.map(([name, fields, payload]) => ({
    name,
    fields: {
      track_id: fields.trackId,
      group: fields.group,
      object_seq: fields.objectSeq,
      capture_us: fields.captureUs.toString(),
      keyframe: fields.keyframe ?? false,
      spatial_layer: fields.spatialLayer ?? 0,
      temporal_layer: fields.temporalLayer ?? 0,
      level_dbov: fields.levelDbov ?? 127,
      voice_activity: fields.voiceActivity ?? false,
    },
    payload_hex: toHex(payload),
    hex: toHex(encodeFrame(fields, payload)),
  }));
  const comment =
    "Written by client/web/test/frame-ts-vectors.test.ts from frame.ts (npm run vectors); do not edit.";
  return JSON.stringify({ comment, valid }, null, 2) + "\n";
}

describe("frames written by frame.ts for the Python side", () => {
  it("are checked in as frame.ts writes them today", () => {
    const rendered = render();
    if (process.env.UPDATE_VECTORS === "1") writeFileSync(PATH, rendered);
    expect(readFileSync(PATH, "utf8")).toBe(rendered);
  });

  it("read back whole from a stream however the bytes are split", () => {
    const stream = CASES.map(([, fields, payload]) => encodeFrame(fields, payload));
    const joined = new Uint8Array(stream.reduce((total, frame) => total + frame.length, 0));
    stream.reduce((offset, frame) => (joined.set(frame, offset), offset + frame.length), 0);
    for (const size of [1, 7, 28, 29, 100]) {
      const reader = new FrameReader();
      const frames = [];
      for (let offset = 0; offset < joined.length; offset += size) {
        frames.push(...reader.feed(joined.subarray(offset, offset + size)));
      }
      reader.close();
      expect(frames.map((frame) => toHex(frame.bytes))).toEqual(stream.map(toHex));
    }
  });
});
