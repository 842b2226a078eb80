/** SpeakerDetector with a hand-driven clock. */
import { describe, expect, it } from "vitest";

import { SpeakerDetector } from "../src/lib/speaker";

const CONFIG = { windowMs: 400, holdMs: 1500, switchDb: 6, smoothing: 0.5 };

/** `participant` talks at `levelDbov` from `fromMs` for `forMs`, one packet per 20 ms. */
function talk(
  detector: SpeakerDetector,
  participant: string,
  levelDbov: number,
  fromMs: number,
  forMs: number,
) {
  for (let t = fromMs; t < fromMs + forMs; t += 20) detector.level(participant, levelDbov, true, t);
}

describe("SpeakerDetector", () => {
  it("has no active speaker before anyone speaks, and ignores packets without voice", () => {
    const detector = new SpeakerDetector(CONFIG);
    detector.level("ann", 10, false, 0);
    expect(detector.active(10)).toBeNull();
    expect(detector.isSpeaking("ann", 10)).toBe(false);
  });

  it("makes the one who speaks active, and keeps them active after they stop", () => {
    const detector = new SpeakerDetector(CONFIG);
    talk(detector, "ann", 30, 0, 500);
    expect(detector.active(500)).toBe("ann");
    expect(detector.isSpeaking("ann", 500)).toBe(true);
    expect(detector.isSpeaking("ann", 1000)).toBe(false);
    expect(detector.active(5000)).toBe("ann");
  });

  it("switches to the next person once the current speaker has stopped", () => {
    const detector = new SpeakerDetector(CONFIG);
    talk(detector, "ann", 30, 0, 500);
    detector.active(500);
    talk(detector, "bob", 50, 1000, 200);
    expect(detector.active(1200)).toBe("bob");
  });

  it("does not flicker: a louder voice takes over only after the hold time and by the margin", () => {
    const detector = new SpeakerDetector(CONFIG);
    talk(detector, "ann", 40, 0, 3000);
    expect(detector.active(100)).toBe("ann");
    talk(detector, "bob", 36, 200, 2800);
    expect(detector.active(1000)).toBe("ann");
    talk(detector, "cat", 20, 500, 2500);
    expect(detector.active(1000)).toBe("ann");
    expect(detector.active(1700)).toBe("cat");
  });

  it("forgets someone who left", () => {
    const detector = new SpeakerDetector(CONFIG);
    talk(detector, "ann", 30, 0, 200);
    detector.active(200);
    detector.forget("ann");
    expect(detector.active(200)).toBeNull();
    expect(detector.isSpeaking("ann", 200)).toBe(false);
  });
});
