/** PlayoutMixer block by block, as the AudioWorklet drives it. */
import { describe, expect, it } from "vitest";

import { PlayoutMixer } from "../src/lib/mixer";

const CONFIG = { prefill: 4, maxQueued: 10 };

function block(mixer: PlayoutMixer, size = 4): number[] {
  const out = new Float32Array(size);
  mixer.render(out);
  return [...out];
}

describe("PlayoutMixer", () => {
  it("plays silence until a source has its prefill queued, then its samples in order", () => {
    const mixer = new PlayoutMixer(CONFIG);
    mixer.push("a", Float32Array.of(0.1, 0.2, 0.3));
    expect(block(mixer)).toEqual([0, 0, 0, 0]);
    mixer.push("a", Float32Array.of(0.4, 0.5));
    expect(block(mixer)).toEqual([0.1, 0.2, 0.3, 0.4].map(Math.fround));
    expect(mixer.queued("a")).toBe(1);
  });

  it("mixes sources and clamps the sum", () => {
    const mixer = new PlayoutMixer(CONFIG);
    mixer.push("a", Float32Array.of(0.5, 0.5, 0.9, -0.9));
    mixer.push("b", Float32Array.of(0.25, -0.5, 0.9, -0.9));
    expect(block(mixer)).toEqual([0.75, 0, 1, -1]);
  });

  it("counts an underrun and waits for the prefill again before restarting", () => {
    const mixer = new PlayoutMixer(CONFIG);
    mixer.push("a", Float32Array.of(1, 1, 1, 1, 0.5, 0.5));
    block(mixer);
    expect(block(mixer)).toEqual([0.5, 0.5, 0, 0]);
    expect(mixer.stats.underruns).toBe(1);
    mixer.push("a", Float32Array.of(0.25, 0.25));
    expect(block(mixer)).toEqual([0, 0, 0, 0]);
    mixer.push("a", Float32Array.of(0.25, 0.25));
    expect(block(mixer)).toEqual([0.25, 0.25, 0.25, 0.25]);
  });

  it("drops the oldest samples down to the prefill when a queue grows too long", () => {
    const mixer = new PlayoutMixer(CONFIG);
    mixer.push(
      "a",
      Float32Array.from({ length: 8 }, (_, i) => i / 100),
    );
    mixer.push(
      "a",
      Float32Array.from({ length: 4 }, (_, i) => (8 + i) / 100),
    );
    expect(mixer.queued("a")).toBe(4);
    expect(mixer.stats.droppedSamples).toBe(8);
    expect(block(mixer)).toEqual([0.08, 0.09, 0.1, 0.11].map(Math.fround));
  });

  it("forgets a removed source", () => {
    const mixer = new PlayoutMixer(CONFIG);
    mixer.push("a", Float32Array.of(1, 1, 1, 1));
    mixer.remove("a");
    expect(block(mixer)).toEqual([0, 0, 0, 0]);
  });
});
