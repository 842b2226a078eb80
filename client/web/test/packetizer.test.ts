import { describe, expect, it } from "vitest";

import { FrameError, decodeFrame } from "../src/lib/frame";
import { AudioPacketizer, VideoPacketizer, audioLevel } from "../src/lib/packetizer";

describe("VideoPacketizer", () => {
  it("opens a group at every keyframe and numbers the frames within it from 0", () => {
    const packetizer = new VideoPacketizer(5, 1000);
    const kinds = [true, false, false, true, false];
    const packets = kinds.map((key, i) => packetizer.packetize(key, BigInt(i), Uint8Array.of(i)));
    const headers = packets.map((packet) => (packet === null ? null : decodeFrame(packet.bytes).header));
    expect(headers.map((header) => [header?.group, header?.objectSeq, header?.keyframe])).toEqual([
      [0, 0, true],
      [0, 1, false],
      [0, 2, false],
      [1, 0, true],
      [1, 1, false],
    ]);
    expect(packets.map((packet) => packet?.newGroup)).toEqual(kinds);
    expect(headers.every((header) => header?.trackId === 5)).toBe(true);
  });

  it("drops delta frames until the first keyframe", () => {
    const packetizer = new VideoPacketizer(5, 1000);
    expect(packetizer.packetize(false, 0n, Uint8Array.of(1))).toBeNull();
    expect(packetizer.packetize(true, 0n, Uint8Array.of(1))?.newGroup).toBe(true);
  });

  it("refuses a payload over the server's limit", () => {
    expect(() => new VideoPacketizer(5, 3).packetize(true, 0n, new Uint8Array(4))).toThrow(FrameError);
  });
});

describe("AudioPacketizer", () => {
  it("counts packets in group 0 and carries the audio level", () => {
    const packetizer = new AudioPacketizer(9, 1000);
    packetizer.packetize(1n, Uint8Array.of(1));
    const { header, payload } = decodeFrame(packetizer.packetize(2n, Uint8Array.of(2, 3), 30, true));
    expect(header).toMatchObject({ trackId: 9, group: 0, objectSeq: 1, captureUs: 2n, levelDbov: 30 });
    expect(header.voiceActivity).toBe(true);
    expect([...payload]).toEqual([2, 3]);
  });
});

describe("audioLevel", () => {
  it.each([
    [new Float32Array(480), 127, false],
    [new Float32Array(480).fill(1), 0, true],
    [new Float32Array(480).fill(0.1), 20, true],
    [new Float32Array(480).fill(0.001), 60, false],
    [new Float32Array(0), 127, false],
  ])("measures %#", (samples, levelDbov, voice) => {
    expect(audioLevel(samples)).toEqual({ levelDbov, voice });
  });
});
