/** JitterBuffer with a hand-driven clock. */
import { describe, expect, it } from "vitest";

import { JitterBuffer, type Playout } from "../src/lib/jitter";

const CONFIG = { targetDelayMs: 60, frameDurationMs: 20, capacity: 10 };

function payload(seq: number): Uint8Array {
  return Uint8Array.of(seq);
}

function seqs(playouts: Playout[]): string[] {
  return playouts.map((playout) => `${playout.kind}:${playout.seq}`);
}

describe("JitterBuffer", () => {
  it("holds the first packet for the target delay, then plays one packet per frame duration", () => {
    const buffer = new JitterBuffer(CONFIG);
    buffer.push(100, 1n, payload(100), 1000);
    buffer.push(101, 2n, payload(101), 1020);
    expect(buffer.pop(1059)).toEqual([]);
    expect(buffer.pop(1060)).toEqual([{ kind: "frame", seq: 100, captureUs: 1n, payload: payload(100) }]);
    expect(buffer.pop(1079)).toEqual([]);
    expect(seqs(buffer.pop(1080))).toEqual(["frame:101"]);
  });

  it("plays reordered packets in sequence order", () => {
    const buffer = new JitterBuffer(CONFIG);
    for (const seq of [0, 2, 1, 4, 3]) buffer.push(seq, 0n, payload(seq), 0);
    expect(seqs(buffer.pop(140))).toEqual(["frame:0", "frame:1", "frame:2", "frame:3", "frame:4"]);
  });

  it("reports a missing packet as lost once its turn has passed and later packets wait", () => {
    const buffer = new JitterBuffer(CONFIG);
    buffer.push(0, 0n, payload(0), 0);
    buffer.push(2, 0n, payload(2), 40);
    expect(seqs(buffer.pop(100))).toEqual(["frame:0", "lost:1", "frame:2"]);
    expect(buffer.stats.lost).toBe(1);
  });

  it("drops a packet that arrives after its turn, and duplicates", () => {
    const buffer = new JitterBuffer(CONFIG);
    buffer.push(0, 0n, payload(0), 0);
    buffer.push(2, 0n, payload(2), 0);
    expect(buffer.push(2, 0n, payload(2), 1)).toBe("duplicate");
    buffer.pop(80);
    expect(buffer.push(1, 0n, payload(1), 81)).toBe("late");
    expect(buffer.stats).toMatchObject({ accepted: 2, late: 1, duplicate: 1, lost: 1 });
  });

  it("stops on an underrun instead of inventing losses, and re-anchors on the next packet", () => {
    const buffer = new JitterBuffer(CONFIG);
    buffer.push(0, 0n, payload(0), 0);
    expect(seqs(buffer.pop(1000))).toEqual(["frame:0"]);
    expect(buffer.pop(5000)).toEqual([]);
    expect(buffer.push(50, 0n, payload(50), 5000)).toBe("reanchored");
    expect(buffer.pop(5059)).toEqual([]);
    expect(seqs(buffer.pop(5060))).toEqual(["frame:50"]);
    expect(buffer.stats.lost).toBe(0);
  });

  it("re-anchors when a packet jumps past its capacity, dropping what it held", () => {
    const buffer = new JitterBuffer(CONFIG);
    buffer.push(0, 0n, payload(0), 0);
    buffer.push(1, 0n, payload(1), 0);
    expect(buffer.push(10, 0n, payload(10), 5)).toBe("reanchored");
    expect(buffer.size).toBe(1);
    expect(seqs(buffer.pop(65))).toEqual(["frame:10"]);
  });
});
