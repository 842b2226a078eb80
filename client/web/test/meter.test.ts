/** TrackMeter: the stats overlay's figures over a sliding window. */
import { describe, expect, it } from "vitest";

import { TrackMeter } from "../src/lib/meter";

describe("TrackMeter", () => {
  it("reports nothing decoded before the first frame", () => {
    expect(new TrackMeter().figures(0)).toEqual({
      width: 0,
      height: 0,
      fps: 0,
      bitrate: 0,
      latencyMs: null,
      decodedFrames: 0,
    });
  });

  it("counts frame rate, bitrate and median latency over the last second", () => {
    const meter = new TrackMeter(1000);
    for (let i = 0; i < 30; i++) {
      const now = 10_000 + i * 33;
      meter.received(1000, now);
      meter.decoded(640, 360, now - (i % 3 === 0 ? 50 : 20), now);
    }
    const figures = meter.figures(10_000 + 29 * 33);
    expect(figures).toMatchObject({ width: 640, height: 360, fps: 30, bitrate: 240_000, decodedFrames: 30 });
    expect(figures.latencyMs).toBe(20);
  });

  it("forgets samples older than the window but keeps the totals", () => {
    const meter = new TrackMeter(1000);
    meter.received(500, 0);
    meter.decoded(320, 180, 0, 10);
    const later = meter.figures(5000);
    expect(later).toMatchObject({ fps: 0, bitrate: 0, latencyMs: null, decodedFrames: 1, width: 320 });
  });
});
