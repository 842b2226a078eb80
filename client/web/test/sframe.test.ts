/**
 * sframe.ts against RFC 9605's published vectors (vectors/sframe-rfc9605.json, the same file as the Python
 * side's tests/data/sframe-rfc9605.json), against frames the Python implementation sealed
 * (vectors/sframe-python.json, written by tests/web/make_sframe_vectors.py), and the frames it seals for the
 * Python side (vectors/sframe-ts.json, decrypted by tests/web/test_sframe_vectors.py). The last test fails
 * when that file is not what sframe.ts writes today; `UPDATE_VECTORS=1 npx vitest run test/sframe.test.ts`
 * rewrites it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import {
  CipherSuite,
  MAX_HEADER_SIZE,
  MAX_U64,
  SFrameAuthError,
  SFrameContext,
  SFrameError,
  SFrameHeaderError,
  SFrameKey,
  SFrameKeyError,
  SFrameReplayError,
  SFrameUnknownKeyError,
  SUITE_PARAMS,
  aeadDecrypt,
  aeadEncrypt,
  decodeHeader,
  deriveKeySalt,
  encodeHeader,
  isCipherSuite,
  keyLabel,
  saltLabel,
} from "../src/lib/sframe";
import { fromHex, toHex } from "./hex";

interface HeaderVector {
  kid: string;
  ctr: string;
  encoded: string;
}

interface AeadVector {
  cipher_suite: number;
  key: string;
  enc_key: string;
  auth_key: string;
  nonce: string;
  aad: string;
  pt: string;
  ct: string;
}

interface SFrameVector {
  cipher_suite: number;
  kid: string;
  ctr: string;
  base_key: string;
  sframe_key_label: string;
  sframe_salt_label: string;
  sframe_key: string;
  sframe_salt: string;
  metadata: string;
  nonce: string;
  aad: string;
  pt: string;
  ct: string;
}

interface RfcVectors {
  source: string;
  header: HeaderVector[];
  aes_ctr_hmac: AeadVector[];
  sframe: SFrameVector[];
}

interface FrameVector {
  name: string;
  cipher_suite: number;
  kid: string;
  ctr: string;
  base_key: string;
  metadata: string;
  plaintext: string;
  frame: string;
}

type ErrorKind = "header" | "unknown_key" | "auth" | "replay";

interface RejectedVector {
  name: string;
  cipher_suite: number;
  kid: string;
  base_key: string;
  replay_window: number;
  accept_first: string[];
  frame: string;
  metadata: string;
  error: ErrorKind;
}

interface PythonVectors {
  frames: FrameVector[];
  rejected: RejectedVector[];
}

const ERRORS: Record<ErrorKind, abstract new (...args: never[]) => SFrameError> = {
  header: SFrameHeaderError,
  unknown_key: SFrameUnknownKeyError,
  auth: SFrameAuthError,
  replay: SFrameReplayError,
};

function vectorPath(name: string): string {
  return fileURLToPath(new URL(`./vectors/${name}`, import.meta.url));
}

function readVectors(name: string): unknown {
  // KIDs and CTRs reach 2^64 - 1, past the exact range of a JavaScript number: read them as strings.
  const text = readFileSync(vectorPath(name), "utf8").replace(/"(kid|ctr)": (\d+)/g, '"$1": "$2"');
  return JSON.parse(text);
}

const RFC = readVectors("sframe-rfc9605.json") as RfcVectors;
const PYTHON = readVectors("sframe-python.json") as PythonVectors;
const SUITES = Object.values(CipherSuite);
const BASE_KEY = new Uint8Array(16).map((_, i) => i);
const EMPTY = new Uint8Array(0);

function suiteOf(value: number): CipherSuite {
  if (!isCipherSuite(value)) throw new Error(`not an RFC 9605 cipher suite: ${value}`);
  return value;
}

/** Deterministic bytes (xorshift32), so a failing case reproduces. */
function pseudoRandom(seed: number, size: number): Uint8Array {
  let state = seed | 1;
  return new Uint8Array(size).map(() => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state & 0xff;
  });
}

function flip(data: Uint8Array, index: number, bit = 0): Uint8Array {
  const copy = new Uint8Array(data);
  copy[index] = (copy[index] ?? 0) ^ (1 << bit);
  return copy;
}

async function pair(
  suite: CipherSuite,
  kid = 9n,
  replayWindow = 1024,
): Promise<[SFrameContext, SFrameContext]> {
  const sender = new SFrameContext(suite);
  const receiver = new SFrameContext(suite, { replayWindow });
  await sender.addEncryptionKey(kid, BASE_KEY);
  await receiver.addDecryptionKey(kid, BASE_KEY);
  return [sender, receiver];
}

/** `count` frames from KID 9 in CTR order; frame n carries the byte n. */
async function sealInOrder(sender: SFrameContext, count: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  for (let n = 0; n < count; n++) frames.push(await sender.encrypt(9n, new Uint8Array([n])));
  return frames;
}

describe("RFC 9605 test vectors", () => {
  it("cover every header form and every suite", () => {
    expect(RFC.source).toContain("sframe-wg/sframe");
    expect(RFC.header).toHaveLength(289);
    expect(RFC.sframe.map((vector) => vector.cipher_suite).sort()).toEqual(SUITES);
    expect(RFC.aes_ctr_hmac.map((vector) => vector.cipher_suite)).toEqual([1, 2, 3]);
  });

  it.each(RFC.header)("header $encoded encodes and decodes", (vector) => {
    const kid = BigInt(vector.kid);
    const ctr = BigInt(vector.ctr);
    const encoded = fromHex(vector.encoded);
    expect(toHex(encodeHeader(kid, ctr))).toBe(vector.encoded);
    expect(decodeHeader(encoded)).toEqual({ kid, ctr, size: encoded.length });
    const followed = new Uint8Array([...encoded, 0xaa, 0xbb]);
    expect(decodeHeader(followed)).toEqual({ kid, ctr, size: encoded.length });
  });

  it.each(RFC.aes_ctr_hmac)("AES-CTR-HMAC AEAD of suite $cipher_suite", async (vector) => {
    const suite = suiteOf(vector.cipher_suite);
    const [key, nonce, aad] = [fromHex(vector.key), fromHex(vector.nonce), fromHex(vector.aad)];
    const ciphertext = fromHex(vector.ct);
    expect(vector.key).toBe(vector.enc_key + vector.auth_key);
    expect(toHex(await aeadEncrypt(suite, key, nonce, aad, fromHex(vector.pt)))).toBe(vector.ct);
    expect(toHex(await aeadDecrypt(suite, key, nonce, aad, ciphertext))).toBe(vector.pt);
    for (let index = 0; index < ciphertext.length; index++) {
      await expect(aeadDecrypt(suite, key, nonce, aad, flip(ciphertext, index))).rejects.toThrow(
        SFrameAuthError,
      );
    }
    await expect(aeadDecrypt(suite, key, nonce, fromHex(vector.aad + "21"), ciphertext)).rejects.toThrow(
      SFrameAuthError,
    );
  });

  it.each(RFC.sframe)("SFrame key schedule, nonce and ciphertext of suite $cipher_suite", async (vector) => {
    const suite = suiteOf(vector.cipher_suite);
    const kid = BigInt(vector.kid);
    const ctr = BigInt(vector.ctr);
    const metadata = fromHex(vector.metadata);
    expect(toHex(keyLabel(suite, kid))).toBe(vector.sframe_key_label);
    expect(toHex(saltLabel(suite, kid))).toBe(vector.sframe_salt_label);
    const { key, salt } = await deriveKeySalt(suite, kid, fromHex(vector.base_key));
    expect([toHex(key), toHex(salt)]).toEqual([vector.sframe_key, vector.sframe_salt]);
    const sframeKey = await SFrameKey.create(suite, kid, key, salt);
    expect(toHex(sframeKey.nonce(ctr))).toBe(vector.nonce);
    expect(toHex(encodeHeader(kid, ctr)) + vector.metadata).toBe(vector.aad);
    const frame = await sframeKey.seal(ctr, fromHex(vector.pt), metadata);
    expect(toHex(frame)).toBe(vector.ct);
    expect(toHex(await sframeKey.open(decodeHeader(frame), frame, metadata))).toBe(vector.pt);
  });

  it.each(RFC.sframe)("suite $cipher_suite decrypts through a context, once", async (vector) => {
    const context = new SFrameContext(suiteOf(vector.cipher_suite));
    await context.addDecryptionKey(BigInt(vector.kid), fromHex(vector.base_key));
    const [frame, metadata] = [fromHex(vector.ct), fromHex(vector.metadata)];
    const opened = await context.decrypt(frame, metadata);
    expect([opened.kid, opened.ctr, toHex(opened.plaintext)]).toEqual([
      BigInt(vector.kid),
      BigInt(vector.ctr),
      vector.pt,
    ]);
    await expect(context.decrypt(frame, metadata)).rejects.toThrow(SFrameReplayError);
  });
});

describe("SFrame header", () => {
  it.each([
    ["", "empty"],
    ["80", "KID needs 1 bytes"],
    ["f0ffffffffffffff", "KID needs 8 bytes"],
    ["08", "CTR needs 1 bytes"],
    ["0f01020304050607", "CTR needs 8 bytes"],
    ["8fff", "CTR needs 8 bytes, 0 left"],
    ["8007", "KID 7 is not in its minimal encoding"],
    ["900008", "KID 8 is not in its minimal encoding"],
    ["0805", "CTR 5 is not in its minimal encoding"],
    ["0900ff", "CTR 255 is not in its minimal encoding"],
    ["0f0000000000000001", "CTR 1 is not in its minimal encoding"],
  ])("refuses %s (%s)", (encoded, match) => {
    const decode = () => decodeHeader(fromHex(encoded));
    expect(decode).toThrow(SFrameHeaderError);
    expect(decode).toThrow(match);
  });

  it.each([
    [-1n, 0n],
    [0n, -1n],
    [MAX_U64 + 1n, 0n],
    [0n, MAX_U64 + 1n],
  ])("cannot encode KID %s, CTR %s", (kid, ctr) => {
    expect(() => encodeHeader(kid, ctr)).toThrow(SFrameHeaderError);
  });

  it("is at most MAX_HEADER_SIZE bytes", () => {
    expect(encodeHeader(MAX_U64, MAX_U64)).toHaveLength(MAX_HEADER_SIZE);
  });

  it("round-trips every power of two and its neighbours at its minimal size", () => {
    const values = [0n, 7n, 8n, MAX_U64];
    for (let bit = 0n; bit < 64n; bit++) values.push((1n << bit) - 1n, 1n << bit);
    for (const kid of values) {
      for (const ctr of values) {
        const encoded = encodeHeader(kid, ctr);
        expect(decodeHeader(encoded)).toEqual({ kid, ctr, size: encoded.length });
      }
    }
  });

  it("decodes any two bytes to a canonical header or refuses them", () => {
    for (let first = 0; first < 256; first++) {
      for (const second of [0, 1, 7, 8, 0xff]) {
        const data = new Uint8Array([first, second]);
        let header;
        try {
          header = decodeHeader(data);
        } catch (error) {
          expect(error).toBeInstanceOf(SFrameHeaderError);
          continue;
        }
        expect(toHex(encodeHeader(header.kid, header.ctr))).toBe(toHex(data.subarray(0, header.size)));
      }
    }
  });
});

describe("SFrame frames", () => {
  it.each(SUITES)("suite %i round-trips plaintexts of many sizes through a context", async (suite) => {
    const [sender, receiver] = await pair(suite, 300n);
    for (const [ctr, size] of [0, 1, 15, 16, 17, 100, 1200, 4096, 25_000].entries()) {
      const plaintext = pseudoRandom(ctr + 1, size);
      const metadata = pseudoRandom(size + 7, ctr);
      const frame = await sender.encrypt(300n, plaintext, metadata);
      expect(frame.length).toBe(encodeHeader(300n, BigInt(ctr)).length + size + SUITE_PARAMS[suite].nt);
      const opened = await receiver.decrypt(frame, metadata);
      expect([opened.kid, opened.ctr, toHex(opened.plaintext)]).toEqual([
        300n,
        BigInt(ctr),
        toHex(plaintext),
      ]);
    }
  });

  it.each(SUITES)("suite %i refuses every flipped body bit and a tampered header", async (suite) => {
    const [sender, receiver] = await pair(suite);
    await receiver.addDecryptionKey(8n, BASE_KEY);
    const frame = await sender.encrypt(9n, pseudoRandom(5, 40), new Uint8Array([1, 2]));
    const { size } = decodeHeader(frame);
    for (let index = 0; index < frame.length; index++) {
      for (const bit of index < size ? [0, 1, 2, 3, 4, 5, 6, 7] : [index % 8]) {
        await expect(receiver.decrypt(flip(frame, index, bit), new Uint8Array([1, 2]))).rejects.toThrow(
          index < size ? SFrameError : SFrameAuthError,
        );
      }
    }
    expect(toHex((await receiver.decrypt(frame, new Uint8Array([1, 2]))).plaintext)).toBe(
      toHex(pseudoRandom(5, 40)),
    );
  });

  it.each(SUITES)("suite %i refuses other metadata, truncation and a foreign key", async (suite) => {
    const [sender, receiver] = await pair(suite);
    const metadata = new Uint8Array([7]);
    const frame = await sender.encrypt(9n, new Uint8Array([1, 2, 3]), metadata);
    await expect(receiver.decrypt(frame, new Uint8Array([8]))).rejects.toThrow(SFrameAuthError);
    await expect(receiver.decrypt(frame)).rejects.toThrow(SFrameAuthError);
    for (const keep of [frame.length - 1, frame.length - SUITE_PARAMS[suite].nt, decodeHeader(frame).size]) {
      await expect(receiver.decrypt(frame.subarray(0, keep), metadata)).rejects.toThrow(SFrameAuthError);
    }
    await expect(receiver.decrypt(frame.subarray(0, 1), metadata)).rejects.toThrow(SFrameHeaderError);
    const stranger = new SFrameContext(suite);
    await stranger.addDecryptionKey(9n, new Uint8Array(16));
    await expect(stranger.decrypt(frame, metadata)).rejects.toThrow(SFrameAuthError);
    expect((await receiver.decrypt(frame, metadata)).ctr).toBe(0n);
  });

  it("does not burn the counter of a forged frame", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_CTR_HMAC_SHA256_32);
    const frame = await sender.encrypt(9n, new Uint8Array([1]));
    await expect(receiver.decrypt(flip(frame, frame.length - 1))).rejects.toThrow(SFrameAuthError);
    expect((await receiver.decrypt(frame)).ctr).toBe(0n);
  });

  it("hands out distinct counters to concurrent encryptions", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const frames = await Promise.all(
      Array.from({ length: 20 }, (_, n) => sender.encrypt(9n, new Uint8Array([n]))),
    );
    const counters = frames.map((frame) => decodeHeader(frame).ctr);
    expect(new Set(counters).size).toBe(20);
    const opened = await Promise.all(frames.map((frame) => receiver.decrypt(frame)));
    expect(opened.map((frame) => frame.plaintext[0])).toEqual(Array.from({ length: 20 }, (_, n) => n));
  });

  it("accepts one of two concurrent decryptions of the same frame", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const frame = await sender.encrypt(9n, new Uint8Array([1]));
    const results = await Promise.allSettled([receiver.decrypt(frame), receiver.decrypt(frame)]);
    expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
    const rejected = results.find((result) => result.status === "rejected");
    expect(rejected?.reason).toBeInstanceOf(SFrameReplayError);
  });
});

describe("SFrame replay window and keys", () => {
  it("refuses replays and too-old counters, and accepts reordering inside the window", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_GCM_SHA256_128, 9n, 4);
    const frames = await sealInOrder(sender, 12);
    const at = (n: number) => frames[n] ?? EMPTY;
    expect((await receiver.decrypt(at(10))).ctr).toBe(10n);
    await expect(receiver.decrypt(at(10))).rejects.toThrow("already accepted");
    for (const n of [8, 7, 11, 9]) expect((await receiver.decrypt(at(n))).ctr).toBe(BigInt(n));
    for (const n of [8, 9, 11]) await expect(receiver.decrypt(at(n))).rejects.toThrow("already accepted");
    for (const n of [0, 6, 7]) {
      await expect(receiver.decrypt(at(n))).rejects.toThrow("older than the replay window");
    }
  });

  it("accepts a shuffled burst exactly once", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_CTR_HMAC_SHA256_64, 9n, 64);
    const frames = await sealInOrder(sender, 40);
    const order = Array.from(pseudoRandom(3, 40), (byte, n) => [byte, n] as const)
      .sort(([a], [b]) => a - b)
      .map(([, n]) => n);
    for (const n of order) expect((await receiver.decrypt(frames[n] ?? EMPTY)).plaintext[0]).toBe(n);
    for (const n of order)
      await expect(receiver.decrypt(frames[n] ?? EMPTY)).rejects.toThrow(SFrameReplayError);
  });

  it("reports an unknown KID with the KID, and never decrypts with its own sending key", async () => {
    const [sender] = await pair(CipherSuite.AES_128_GCM_SHA256_128, 77n);
    const frame = await sender.encrypt(77n, new Uint8Array([1]));
    const stranger = new SFrameContext(CipherSuite.AES_128_GCM_SHA256_128);
    const error: unknown = await stranger.decrypt(frame).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SFrameUnknownKeyError);
    expect((error as SFrameUnknownKeyError).kid).toBe(77n);
    expect((error as SFrameUnknownKeyError).message).toContain("no key was given");
    await expect(sender.decrypt(frame)).rejects.toThrow("own encryption key");
    await expect(stranger.encrypt(77n, new Uint8Array(0))).rejects.toThrow(SFrameKeyError);
  });

  it("overlaps keys during a rotation, then refuses the retired key's frames", async () => {
    const suite = CipherSuite.AES_256_GCM_SHA512_128;
    const [sender, receiver] = await pair(suite, 1n);
    const old = await sender.encrypt(1n, new Uint8Array([1]));
    await sender.addEncryptionKey(2n, new Uint8Array(32).fill(2));
    await receiver.addDecryptionKey(2n, new Uint8Array(32).fill(2));
    const fresh = await sender.encrypt(2n, new Uint8Array([2]));
    const late = await sender.encrypt(1n, new Uint8Array([3]));
    for (const frame of [fresh, old, late]) await receiver.decrypt(frame);
    sender.retireKey(1n);
    receiver.retireKey(1n);
    expect([receiver.hasKey(1n), receiver.hasKey(2n)]).toEqual([false, true]);
    await expect(sender.encrypt(1n, new Uint8Array(0))).rejects.toThrow("not an encryption key");
    for (const frame of [old, late]) await expect(receiver.decrypt(frame)).rejects.toThrow("retired");
    await expect(receiver.addDecryptionKey(1n, BASE_KEY)).rejects.toThrow("was retired");
    expect(() => {
      receiver.retireKey(1n);
    }).toThrow("no key to retire");
  });

  it("refuses a frame whose key is retired while it is being decrypted", async () => {
    const [sender, receiver] = await pair(CipherSuite.AES_128_GCM_SHA256_128);
    const pending = receiver.decrypt(await sender.encrypt(9n, new Uint8Array([1])));
    receiver.retireKey(9n);
    await expect(pending).rejects.toThrow(SFrameUnknownKeyError);
  });

  it("refuses misuse of the key store", async () => {
    const context = new SFrameContext(CipherSuite.AES_128_GCM_SHA256_128);
    await context.addEncryptionKey(1n, BASE_KEY);
    await expect(context.addDecryptionKey(1n, BASE_KEY)).rejects.toThrow("already has a key");
    await expect(context.addEncryptionKey(1n, BASE_KEY)).rejects.toThrow("already has a key");
    await expect(context.addDecryptionKey(2n, new Uint8Array(15))).rejects.toThrow("base key of 15 bytes");
    await expect(context.addDecryptionKey(MAX_U64 + 1n, BASE_KEY)).rejects.toThrow("outside");
    const racing = [context.addDecryptionKey(3n, BASE_KEY), context.addDecryptionKey(3n, BASE_KEY)];
    const settled = await Promise.allSettled(racing);
    expect(settled.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect(() => new SFrameContext(CipherSuite.AES_128_GCM_SHA256_128, { replayWindow: 0 })).toThrow(
      SFrameKeyError,
    );
  });

  it.each(SUITES)("suite %i checks raw AEAD and key parameters", async (suite) => {
    const { nk, nn, nt } = SUITE_PARAMS[suite];
    const empty = new Uint8Array(0);
    await expect(
      aeadEncrypt(suite, new Uint8Array(nk - 1), new Uint8Array(nn), empty, empty),
    ).rejects.toThrow("byte key");
    await expect(
      aeadDecrypt(suite, new Uint8Array(nk), new Uint8Array(nn + 1), empty, new Uint8Array(nt)),
    ).rejects.toThrow("byte nonce");
    await expect(SFrameKey.create(suite, 0n, new Uint8Array(nk), new Uint8Array(nn - 1))).rejects.toThrow(
      "byte salt",
    );
    await expect(
      aeadDecrypt(suite, new Uint8Array(nk), new Uint8Array(nn), empty, new Uint8Array(nt - 1)),
    ).rejects.toThrow(SFrameAuthError);
  });

  it("keeps the error classes apart and recognises only RFC 9605 suites", async () => {
    const key = await SFrameKey.derive(CipherSuite.AES_128_GCM_SHA256_128, 1n, BASE_KEY);
    const other = await SFrameKey.derive(CipherSuite.AES_128_GCM_SHA256_128, 2n, BASE_KEY);
    const frame = await other.seal(0n, new Uint8Array([1]));
    await expect(key.open(decodeHeader(frame), frame)).rejects.toThrow("this key is KID 1");
    for (const error of [SFrameHeaderError, SFrameUnknownKeyError, SFrameAuthError, SFrameReplayError]) {
      expect(error.prototype).toBeInstanceOf(SFrameError);
    }
    expect([0, 1, 5, 6, 8].map(isCipherSuite)).toEqual([false, true, true, false, false]);
  });
});

describe("frames sealed by the Python implementation", () => {
  it("cover every suite", () => {
    expect(new Set(PYTHON.frames.map((vector) => vector.cipher_suite))).toEqual(new Set(SUITES));
    expect(new Set(PYTHON.rejected.map((vector) => vector.error))).toEqual(new Set(Object.keys(ERRORS)));
  });

  it.each(PYTHON.frames)("opens $name and seals it to the same bytes", async (vector) => {
    const suite = suiteOf(vector.cipher_suite);
    const [kid, ctr] = [BigInt(vector.kid), BigInt(vector.ctr)];
    const [baseKey, metadata] = [fromHex(vector.base_key), fromHex(vector.metadata)];
    const context = new SFrameContext(suite);
    await context.addDecryptionKey(kid, baseKey);
    const opened = await context.decrypt(fromHex(vector.frame), metadata);
    expect([opened.kid, opened.ctr, toHex(opened.plaintext)]).toEqual([kid, ctr, vector.plaintext]);
    const key = await SFrameKey.derive(suite, kid, baseKey);
    expect(toHex(await key.seal(ctr, fromHex(vector.plaintext), metadata))).toBe(vector.frame);
  });

  it.each(PYTHON.rejected)("refuses $name as Python does ($error)", async (vector) => {
    const context = new SFrameContext(suiteOf(vector.cipher_suite), { replayWindow: vector.replay_window });
    await context.addDecryptionKey(BigInt(vector.kid), fromHex(vector.base_key));
    const metadata = fromHex(vector.metadata);
    for (const earlier of vector.accept_first) await context.decrypt(fromHex(earlier), metadata);
    await expect(context.decrypt(fromHex(vector.frame), metadata)).rejects.toThrow(ERRORS[vector.error]);
  });
});

interface TsCase {
  name: string;
  suite: CipherSuite;
  kid: bigint;
  ctr: bigint;
  plaintext: Uint8Array;
  metadata: Uint8Array;
}

function tsCases(): TsCase[] {
  return SUITES.flatMap((suite) => [
    { name: "audio frame", suite, kid: 5n, ctr: 0n, plaintext: pseudoRandom(suite, 100), metadata: EMPTY },
    {
      name: "video frame with metadata",
      suite,
      kid: 4242n,
      ctr: 1234n,
      plaintext: pseudoRandom(suite + 10, 1500),
      metadata: pseudoRandom(suite + 20, 28),
    },
    {
      name: "KID and CTR beyond 2^53",
      suite,
      kid: 2n ** 59n + 1n,
      ctr: 2n ** 60n + 9n,
      plaintext: new Uint8Array([0xde, 0xad]),
      metadata: EMPTY,
    },
    { name: "largest KID and CTR", suite, kid: MAX_U64, ctr: MAX_U64, plaintext: EMPTY, metadata: EMPTY },
  ]);
}

async function renderTsVectors(): Promise<string> {
  const frames: FrameVector[] = [];
  for (const { name, suite, kid, ctr, plaintext, metadata } of tsCases()) {
    const baseKey = pseudoRandom(Number(kid % 1000n) + 1, 16);
    const key = await SFrameKey.derive(suite, kid, baseKey);
    frames.push({
      name: `suite ${suite}: ${name}`,
      cipher_suite: suite,
      kid: kid.toString(),
      ctr: ctr.toString(),
      base_key: toHex(baseKey),
      metadata: toHex(metadata),
      plaintext: toHex(plaintext),
      frame: toHex(await key.seal(ctr, plaintext, metadata)),
    });
  }
  const comment = "Written by client/web/test/sframe.test.ts from sframe.ts (UPDATE_VECTORS=1); do not edit.";
  return JSON.stringify({ comment, frames }, null, 2) + "\n";
}

describe("frames sealed by sframe.ts for the Python side", () => {
  it("are checked in as sframe.ts writes them today", async () => {
    const rendered = await renderTsVectors();
    const path = vectorPath("sframe-ts.json");
    if (process.env.UPDATE_VECTORS === "1") writeFileSync(path, rendered);
    expect(readFileSync(path, "utf8")).toBe(rendered);
  });
});
