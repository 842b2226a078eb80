/** frame.ts against the vectors the Python codec wrote (tests/web/make_frame_vectors.py). */
import { describe, expect, it } from "vitest";

import { FrameError, FrameReader, decodeFrame, encodeFrame, type FrameFields } from "../src/lib/frame";
import vectors from "./vectors/frames.json";
import { fromHex, toHex } from "./hex";

interface JsonFields {
  track_id: number;
  group: number;
  object_seq: number;
  capture_us: string;
  keyframe?: boolean;
  spatial_layer?: number;
  temporal_layer?: number;
  level_dbov?: number;
  voice_activity?: boolean;
}

function toFields(json: JsonFields): FrameFields {
  return {
    trackId: json.track_id,
    group: json.group,
    objectSeq: json.object_seq,
    captureUs: BigInt(json.capture_us),
    ...(json.keyframe === undefined ? {} : { keyframe: json.keyframe }),
    ...(json.spatial_layer === undefined ? {} : { spatialLayer: json.spatial_layer }),
    ...(json.temporal_layer === undefined ? {} : { temporalLayer: json.temporal_layer }),
    ...(json.level_dbov === undefined ? {} : { levelDbov: json.level_dbov }),
    ...(json.voice_activity === undefined ? {} : { voiceActivity: json.voice_activity }),
  };
}

describe("frames written by the Python codec", () => {
  it.each(vectors.valid)("decodes $name to the Python fields", (vector) => {
    const { header, payload } = decodeFrame(fromHex(vector.hex));
    expect(header).toEqual({
      version: vector.header.version,
      flags: vector.header.flags,
      layers: vector.header.layers,
      audioLevel: vector.header.audio_level,
      payloadLength: vector.header.payload_length,
      trackId: vector.fields.track_id,
      group: vector.fields.group,
      objectSeq: vector.fields.object_seq,
      captureUs: BigInt(vector.fields.capture_us),
      keyframe: vector.fields.keyframe,
      spatialLayer: vector.fields.spatial_layer,
      temporalLayer: vector.fields.temporal_layer,
      levelDbov: vector.fields.level_dbov,
      voiceActivity: vector.fields.voice_activity,
    });
    expect(toHex(payload)).toBe(vector.payload_hex);
  });

  it.each(vectors.valid)("encodes the fields of $name to the Python bytes", (vector) => {
    expect(toHex(encodeFrame(toFields(vector.fields), fromHex(vector.payload_hex)))).toBe(vector.hex);
  });

  it.each(vectors.invalid)("refuses $name with FrameError", (vector) => {
    const decode = () => decodeFrame(fromHex(vector.hex), vector.max_payload);
    expect(decode).toThrow(FrameError);
    expect(decode).toThrow(vector.match);
  });

  it.each(vectors.bad_fields)("refuses to encode a frame with $name", (vector) => {
    const encode = () => encodeFrame(toFields(vector.fields), new Uint8Array(0));
    expect(encode).toThrow(FrameError);
    expect(encode).toThrow(vector.match);
  });

  it.each(vectors.streams)("reads $name as Python does", (vector) => {
    const reader = new FrameReader();
    const frames = vector.chunks.flatMap((chunk) => reader.feed(fromHex(chunk)));
    expect(frames.map((frame) => toHex(frame.bytes))).toEqual(vector.frames);
    if (vector.error_at_close === null) {
      expect(() => {
        reader.close();
      }).not.toThrow();
    } else {
      expect(() => {
        reader.close();
      }).toThrow(vector.error_at_close);
    }
  });
});
