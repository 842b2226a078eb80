/**
 * The key messages (keymessages.ts) and the key manager (e2ee.ts): codecs and their refusals, the pairwise
 * wrap, safety numbers, and the manager's rotation, merging and retirement driven with explicit times
 * between several managers wired to each other through a tiny relay.
 */
import { describe, expect, it } from "vitest";

import { KeyManager, RETIRE_AFTER_MS, ROTATION_DELAY_MS, type KeyAction } from "../src/lib/e2ee";
import {
  HELLO,
  KeyMessageError,
  MEDIA_KEY,
  MEDIA_KEY_SIZE,
  decodeKeyMessage,
  encodeHello,
  generateIdentity,
  openMediaKey,
  safetyNumber,
  sealMediaKey,
  wrapKey,
  wrapKeyBytes,
} from "../src/lib/keymessages";
import { CipherSuite } from "../src/lib/sframe";

const METADATA = Uint8Array.from({ length: 28 }, (_, i) => i);

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof KeyMessageError) return error.kind;
    throw error;
  }
  throw new Error("not refused");
}

describe("key message codecs", () => {
  it("round-trips HELLO and refuses every malformed payload", async () => {
    const { publicKey } = await generateIdentity();
    const hello = encodeHello(publicKey);
    expect(hello.length).toBe(67);
    const decoded = decodeKeyMessage(hello);
    expect(decoded.type).toBe(HELLO);
    if (decoded.type === HELLO) expect(decoded.publicKey).toEqual(publicKey);
    for (const bad of [
      new Uint8Array(0),
      Uint8Array.of(1),
      Uint8Array.of(2, 1, ...publicKey),
      Uint8Array.of(1, 3),
      hello.subarray(0, 66),
      Uint8Array.of(...hello, 0),
      new Uint8Array(MEDIA_KEY_SIZE - 1).fill(1).map((byte, i) => (i === 1 ? MEDIA_KEY : byte)),
    ]) {
      expect(refusal(() => decodeKeyMessage(bad))).toBe("malformed");
    }
  });

  it("wraps a media key for one recipient only, bound to both participant ids", async () => {
    const [alice, bob, eve] = await Promise.all([generateIdentity(), generateIdentity(), generateIdentity()]);
    const out = await wrapKey(alice, bob.publicKey, alice.publicKey, bob.publicKey);
    const inBob = await wrapKey(bob, alice.publicKey, alice.publicKey, bob.publicKey);
    expect(await wrapKeyBytes(alice, bob.publicKey, alice.publicKey, bob.publicKey)).toEqual(
      await wrapKeyBytes(bob, alice.publicKey, alice.publicKey, bob.publicKey),
    );
    expect(await wrapKeyBytes(alice, bob.publicKey, bob.publicKey, alice.publicKey)).not.toEqual(
      await wrapKeyBytes(alice, bob.publicKey, alice.publicKey, bob.publicKey),
    );
    const key = { suite: CipherSuite.AES_128_GCM_SHA256_128, kid: 7n, baseKey: new Uint8Array(32).fill(9) };
    const sealed = await sealMediaKey(out, "a", "b", key);
    expect(sealed.length).toBe(MEDIA_KEY_SIZE);
    const message = decodeKeyMessage(sealed);
    if (message.type !== MEDIA_KEY) throw new Error("not a MEDIA_KEY");
    await expect(openMediaKey(inBob, "a", "b", message)).resolves.toEqual(key);
    const inEve = await wrapKey(eve, alice.publicKey, alice.publicKey, eve.publicKey);
    for (const [wrap, from, to] of [
      [inBob, "a", "c"],
      [inBob, "x", "b"],
      [inEve, "a", "b"],
    ] as const) {
      await expect(openMediaKey(wrap, from, to, message)).rejects.toMatchObject({ kind: "auth" });
    }
    const tampered = {
      ...message,
      ciphertext: message.ciphertext.map((byte, i) => (i === 0 ? byte ^ 1 : byte)),
    };
    await expect(openMediaKey(inBob, "a", "b", tampered)).rejects.toMatchObject({ kind: "auth" });
  });

  it("gives both sides the same safety number: six groups of five digits", async () => {
    const [a, b] = await Promise.all([generateIdentity(), generateIdentity()]);
    const number = await safetyNumber(a.publicKey, b.publicKey);
    expect(number).toMatch(/^\d{5}( \d{5}){5}$/);
    await expect(safetyNumber(b.publicKey, a.publicKey)).resolves.toBe(number);
  });
});

/** Key managers joined to one meeting, their key messages relayed as the server would. */
class Meeting {
  readonly members = new Map<string, KeyManager>();
  readonly keyframes: [string, string][] = [];
  now = 0;

  async join(id: string): Promise<KeyManager> {
    const manager = await KeyManager.create();
    const roster = [...this.members.keys()];
    for (const [other, member] of this.members) await this.relay(other, await member.participantJoined(id));
    this.members.set(id, manager);
    await this.relay(id, await manager.joined(id, roster, this.now));
    return manager;
  }

  async leave(id: string): Promise<void> {
    this.members.delete(id);
    for (const [other, member] of this.members) {
      await this.relay(other, await member.participantLeft(id, this.now));
    }
  }

  async relay(from: string, actions: KeyAction[]): Promise<void> {
    for (const action of actions) {
      if (action.type === "keyframe") {
        this.keyframes.push([from, action.participantId]);
        continue;
      }
      const to = action.to.length > 0 ? action.to : [...this.members.keys()].filter((id) => id !== from);
      for (const recipient of to) {
        const member = this.members.get(recipient);
        if (member !== undefined)
          await this.relay(recipient, await member.receive(from, action.payload, this.now));
      }
    }
  }

  later(ms: number): void {
    this.now += ms;
    for (const member of this.members.values()) member.advance(this.now);
  }
}

function member(meeting: Meeting, id: string): KeyManager {
  const found = meeting.members.get(id);
  if (found === undefined) throw new Error(`${id} is not in the meeting`);
  return found;
}

async function frame(sender: KeyManager, now: number, text = "frame"): Promise<Uint8Array> {
  return sender.seal(METADATA, new TextEncoder().encode(text), now);
}

describe("the key manager", () => {
  it("lets members open each other's frames; a newcomer cannot open what came before it", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    const early = await frame(alice, meeting.now);
    const bob = await meeting.join("b");
    expect(alice.safetyNumber("b")).toBe(bob.safetyNumber("a"));
    expect(alice.safetyNumber("b")).toMatch(/^\d{5}( \d{5}){5}$/);
    // Alice rotated for Bob: her old key (KID 0) was never given to him.
    expect(alice.sendingKid).toBe(0n);
    meeting.later(ROTATION_DELAY_MS);
    expect(alice.sendingKid).toBe(1n);
    const opened = await bob.open("a", await frame(alice, meeting.now, "hi"), METADATA, meeting.now, false);
    expect(opened.ok && new TextDecoder().decode(opened.plaintext)).toBe("hi");
    await expect(bob.open("a", early, METADATA, meeting.now, false)).resolves.toMatchObject({
      ok: false,
      refusal: "unknown_key",
    });
    // Bob was the newcomer: he sent Alice his current key without rotating.
    expect(bob.sendingKid).toBe(0n);
    await expect(
      alice.open("b", await frame(bob, meeting.now), METADATA, meeting.now, false),
    ).resolves.toMatchObject({ ok: true });
    expect(bob.provenIdentity("a")).toEqual(alice.identity.publicKey);
  });

  it("refuses a tampered frame, moved metadata and a replay, counting each by kind", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    const bob = await meeting.join("b");
    meeting.later(ROTATION_DELAY_MS);
    const sealed = await frame(alice, meeting.now);
    const tampered = sealed.map((byte, i) => (i === sealed.length - 1 ? byte ^ 0x80 : byte));
    const moved = METADATA.map((byte, i) => (i === 4 ? byte + 1 : byte));
    await expect(bob.open("a", tampered, METADATA, meeting.now, true)).resolves.toMatchObject({
      refusal: "auth",
    });
    await expect(bob.open("a", sealed, moved, meeting.now, true)).resolves.toMatchObject({ refusal: "auth" });
    await expect(bob.open("a", sealed, METADATA, meeting.now, true)).resolves.toMatchObject({ ok: true });
    await expect(bob.open("a", sealed, METADATA, meeting.now, true)).resolves.toMatchObject({
      refusal: "replay",
    });
    await expect(bob.open("a", new Uint8Array(0), METADATA, meeting.now, true)).resolves.toMatchObject({
      refusal: "malformed",
    });
    expect(bob.refusedFrames).toEqual({ malformed: 1, unknown_key: 0, retired: 0, auth: 2, replay: 1 });
  });

  it("rotates when someone leaves: frames after the switch cannot be opened with the leaver's keys", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    await meeting.join("b");
    const carol = await meeting.join("c");
    meeting.later(ROTATION_DELAY_MS);
    const before = await frame(alice, meeting.now);
    const kidBefore = alice.sendingKid;
    await meeting.leave("c");
    meeting.later(ROTATION_DELAY_MS);
    expect(alice.sendingKid).toBe((kidBefore ?? 0n) + 1n);
    await expect(carol.open("a", before, METADATA, meeting.now, false)).resolves.toMatchObject({ ok: true });
    const after = await frame(alice, meeting.now);
    await expect(carol.open("a", after, METADATA, meeting.now, false)).resolves.toMatchObject({
      ok: false,
      refusal: "unknown_key",
    });
    await expect(member(meeting, "b").open("a", after, METADATA, meeting.now, false)).resolves.toMatchObject({
      ok: true,
    });
  });

  it("keeps a sender's old key for late frames, then retires it for good", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    const bob = await meeting.join("b");
    meeting.later(ROTATION_DELAY_MS);
    const old = [await frame(alice, meeting.now), await frame(alice, meeting.now)];
    await meeting.join("c");
    meeting.later(ROTATION_DELAY_MS);
    await expect(
      bob.open("a", await frame(alice, meeting.now), METADATA, meeting.now, false),
    ).resolves.toMatchObject({ ok: true });
    await expect(
      bob.open("a", old[0] ?? new Uint8Array(), METADATA, meeting.now, false),
    ).resolves.toMatchObject({
      ok: true,
    });
    meeting.later(RETIRE_AFTER_MS);
    await expect(
      bob.open("a", old[1] ?? new Uint8Array(), METADATA, meeting.now, false),
    ).resolves.toMatchObject({
      ok: false,
      refusal: "retired",
    });
  });

  it("merges rotations while one is pending, and re-keys if a leaver got the pending key", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    await meeting.join("b");
    await meeting.join("c");
    meeting.later(ROTATION_DELAY_MS);
    // Both joins merged into one rotation (KID 0 -> 1).
    expect(alice.sendingKid).toBe(1n);
    await meeting.join("d");
    await meeting.leave("d");
    meeting.later(ROTATION_DELAY_MS);
    const after = await frame(alice, meeting.now);
    expect(alice.sendingKid).toBe(3n);
    await expect(member(meeting, "b").open("a", after, METADATA, meeting.now, false)).resolves.toMatchObject({
      ok: true,
    });
  });

  it("refuses key messages it cannot trust, counting each by kind", async () => {
    const alice = await KeyManager.create();
    await alice.joined("a", [], 0);
    await alice.participantJoined("b");
    const bob = await KeyManager.create();
    await bob.joined("b", ["a"], 0);
    const [mediaKey] = await bob.receive("a", encodeHello(alice.identity.publicKey), 0);
    if (mediaKey?.type !== "send") throw new Error("Bob sent Alice no MEDIA_KEY");
    await alice.receive("b", mediaKey.payload, 0);
    expect(alice.refusedKeyMessages.unknown_sender).toBe(1);
    await alice.receive("b", encodeHello(bob.identity.publicKey), 0);
    await alice.receive("b", mediaKey.payload, 0);
    expect(alice.hasKeyFrom("b")).toBe(true);
    await alice.receive("b", mediaKey.payload, 0);
    const mallory = await KeyManager.create();
    await mallory.joined("b", ["a"], 0);
    const [forged] = await mallory.receive("a", encodeHello(alice.identity.publicKey), 0);
    if (forged?.type !== "send") throw new Error("no forged MEDIA_KEY");
    await alice.receive("b", forged.payload, 0);
    await alice.receive("b", encodeHello(mallory.identity.publicKey), 0);
    await alice.receive("b", Uint8Array.of(1, 9), 0);
    expect(alice.refusedKeyMessages).toEqual({
      malformed: 1,
      bad_identity: 0,
      identity_changed: 1,
      unknown_sender: 1,
      auth: 1,
      stale_kid: 1,
      unsupported_suite: 0,
    });
    expect(alice.safetyNumber("b")).toBe(
      await safetyNumber(alice.identity.publicKey, bob.identity.publicKey),
    );
  });

  it("asks for a keyframe when a sender's key arrives after its video was refused", async () => {
    const meeting = new Meeting();
    const alice = await meeting.join("a");
    const bob = await KeyManager.create();
    await alice.participantJoined("b");
    const [hello] = await bob.joined("b", ["a"], 0);
    if (hello?.type !== "send") throw new Error("no HELLO");
    const early = await frame(bob, 0);
    await expect(alice.open("b", early, METADATA, 0, true)).resolves.toMatchObject({
      refusal: "unknown_key",
    });
    meeting.members.set("b", bob);
    await meeting.relay("b", [hello]);
    expect(meeting.keyframes).toEqual([["a", "b"]]);
    await expect(alice.open("b", await frame(bob, 0), METADATA, 0, true)).resolves.toMatchObject({
      ok: true,
    });
  });
});
