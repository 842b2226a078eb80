/** Reconnect back-off: doubling, capped, with jitter taken off. */
import { describe, expect, it } from "vitest";

import { DEFAULT_BACKOFF, backoffDelay } from "../src/lib/backoff";

describe("backoffDelay", () => {
  it("doubles from the initial delay up to the maximum without jitter", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, () => 0));
    expect(delays).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
  });

  it("takes up to the jitter fraction off at random", () => {
    expect(backoffDelay(2, () => 0.999_999)).toBeCloseTo(1000 * (1 - DEFAULT_BACKOFF.jitter), 2);
    expect(backoffDelay(2, () => 0.5)).toBe(750);
  });
});
