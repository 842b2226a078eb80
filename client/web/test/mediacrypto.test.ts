/**
 * MediaCrypto, the session's adapter around the key manager: key messages go out through the link, sealed
 * frames keep their header (only `payload_length` changes), frames open in arrival order per track, and a
 * refused frame resolves null and is counted on the debug hooks.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { debugCounters } from "../src/lib/debug";
import { KeyManager, METADATA_SIZE } from "../src/lib/e2ee";
import { HEADER_SIZE, decodeFrame, encodeFrame } from "../src/lib/frame";
import { MediaCrypto, type CryptoLink } from "../src/lib/mediacrypto";

interface Side {
  crypto: MediaCrypto;
  keyframes: string[];
}

/** Two participants whose MediaCrypto links deliver key messages straight to each other. */
async function pair(): Promise<{ alice: Side; bob: Side; now: { ms: number } }> {
  const now = { ms: 0 };
  const sides = new Map<string, Side>();
  const link = (self: string): CryptoLink => ({
    send: (to, payload) => {
      for (const [id, side] of sides) {
        if (id !== self && (to.length === 0 || to.includes(id))) {
          side.crypto.event({
            case: "keyMessageReceived",
            value: { fromParticipantId: self, payload },
          } as never);
        }
      }
      return Promise.resolve();
    },
    requestKeyframe: (participantId) => sides.get(self)?.keyframes.push(participantId),
    changed: () => undefined,
  });
  const alice = {
    crypto: new MediaCrypto(await KeyManager.create(), link("a"), () => now.ms),
    keyframes: [],
  };
  const bob = { crypto: new MediaCrypto(await KeyManager.create(), link("b"), () => now.ms), keyframes: [] };
  sides.set("a", alice);
  await alice.crypto.joined("a", []);
  alice.crypto.event({ case: "participantJoined", value: { participant: { participantId: "b" } } } as never);
  sides.set("b", bob);
  await bob.crypto.joined("b", ["a"]);
  await vi.waitFor(() => {
    expect(alice.crypto.keys.hasKeyFrom("b") && bob.crypto.keys.hasKeyFrom("a")).toBe(true);
  });
  now.ms += 500;
  return { alice, bob, now };
}

function plainFrame(objectSeq: number, text: string): Uint8Array {
  const fields = { trackId: 7, group: 1, objectSeq, captureUs: 123n, keyframe: objectSeq === 0 };
  return encodeFrame(fields, new TextEncoder().encode(text));
}

beforeEach(() => {
  vi.stubGlobal("window", {});
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("MediaCrypto", () => {
  it("seals whole frames keeping the header and opens them in order per track", async () => {
    const { alice, bob } = await pair();
    const texts = ["key", "one", "two", "three"];
    const sealed = await Promise.all(texts.map((text, i) => alice.crypto.seal(plainFrame(i, text))));
    const opened = sealed.map((frame) => {
      if (frame === null) throw new Error("not sealed");
      const { header, payload } = decodeFrame(frame);
      expect(frame.subarray(0, METADATA_SIZE)).toEqual(
        plainFrame(header.objectSeq, "").subarray(0, METADATA_SIZE),
      );
      expect(header.payloadLength).toBe(frame.length - HEADER_SIZE);
      return bob.crypto.open(7, "a", true, frame.subarray(0, HEADER_SIZE), payload);
    });
    const plaintexts = await Promise.all(opened);
    expect(plaintexts.map((bytes) => new TextDecoder().decode(bytes ?? new Uint8Array()))).toEqual(texts);
    expect(debugCounters().sealedFrames).toBe(4);
    expect(debugCounters().openedFrames).toBe(4);
  });

  it("refuses a frame moved to another track or with a flipped bit, counting it", async () => {
    const { alice, bob } = await pair();
    const frame = await alice.crypto.seal(plainFrame(0, "key"));
    if (frame === null) throw new Error("not sealed");
    const moved = frame.slice(0, HEADER_SIZE);
    moved[7] = 8;
    const payload = frame.subarray(HEADER_SIZE);
    await expect(bob.crypto.open(7, "a", true, moved, payload)).resolves.toBeNull();
    const flipped = payload.map((byte, i) => (i === payload.length - 1 ? byte ^ 1 : byte));
    await expect(bob.crypto.open(7, "a", true, frame.subarray(0, HEADER_SIZE), flipped)).resolves.toBeNull();
    expect(debugCounters().refusedFrames.auth).toBe(2);
    await expect(
      bob.crypto.open(7, "a", true, frame.subarray(0, HEADER_SIZE), payload),
    ).resolves.not.toBeNull();
  });

  it("seals nothing before the first join", async () => {
    const lone = new MediaCrypto(await KeyManager.create(), {
      send: () => Promise.resolve(),
      requestKeyframe: () => undefined,
      changed: () => undefined,
    });
    await expect(lone.seal(plainFrame(0, "key"))).resolves.toBeNull();
  });
});
