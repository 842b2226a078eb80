/**
 * SFrame (RFC 9605): end-to-end authenticated encryption of whole media frames, on WebCrypto.
 *
 * The server must never read media. Each sender encrypts every frame under its own key, named by a key id
 * (KID), with a per-key frame counter (CTR) that makes every nonce unique. Both travel in clear in the SFrame
 * header so a receiver can pick the key; the header and the caller's metadata are authenticated
 * (AAD = header || metadata), so the server cannot alter them unnoticed either.
 *
 * This is the TypeScript twin of `client/python/sframe.py`, layer for layer: the header of section 4.3
 * (`encodeHeader`, `decodeHeader`; minimal encodings only, both ways), the key schedule of 4.4.2
 * (`deriveKeySalt`), each suite's AEAD (`aeadEncrypt`, `aeadDecrypt`), one KID's key (`SFrameKey`) and the
 * key store (`SFrameContext`). Both pass the RFC's vectors and open each other's frames
 * (test/vectors/sframe-*.json). KID and CTR are 64-bit, hence `bigint`. Every failure throws an `SFrameError`
 * subclass, so a receiver counts and drops a bad frame with one handler.
 */

export const MAX_U64 = 0xffff_ffff_ffff_ffffn;
/** Config byte, 8 KID bytes, 8 CTR bytes. */
export const MAX_HEADER_SIZE = 17;
/** `SFrameContext` refuses shorter base keys: they would be guessable, whatever the suite. */
export const MIN_BASE_KEY_SIZE = 16;
/**
 * CTR values a receiver remembers per KID: about 12 s of one sender's audio and video at 80 frames/s, so
 * video groups that lag audio are still accepted.
 */
export const DEFAULT_REPLAY_WINDOW = 1024;

/** The cipher suites of RFC 9605 section 4.5, by their IANA code points. */
export const CipherSuite = {
  AES_128_CTR_HMAC_SHA256_80: 0x0001,
  AES_128_CTR_HMAC_SHA256_64: 0x0002,
  AES_128_CTR_HMAC_SHA256_32: 0x0003,
  AES_128_GCM_SHA256_128: 0x0004,
  AES_256_GCM_SHA512_128: 0x0005,
} as const;
export type CipherSuite = (typeof CipherSuite)[keyof typeof CipherSuite];

/** The constants of RFC 9605 table 1; `nka` is null for the AES-GCM suites. */
export interface SuiteParams {
  readonly hash: "SHA-256" | "SHA-512";
  readonly nh: number;
  readonly nka: number | null;
  readonly nk: number;
  readonly nn: number;
  readonly nt: number;
}

export const SUITE_PARAMS: Readonly<Record<CipherSuite, SuiteParams>> = {
  [CipherSuite.AES_128_CTR_HMAC_SHA256_80]: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 10 },
  [CipherSuite.AES_128_CTR_HMAC_SHA256_64]: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 8 },
  [CipherSuite.AES_128_CTR_HMAC_SHA256_32]: { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nn: 12, nt: 4 },
  [CipherSuite.AES_128_GCM_SHA256_128]: { hash: "SHA-256", nh: 32, nka: null, nk: 16, nn: 12, nt: 16 },
  [CipherSuite.AES_256_GCM_SHA512_128]: { hash: "SHA-512", nh: 64, nka: null, nk: 32, nn: 12, nt: 16 },
};

/** Whether a number (say, from signaling) is a cipher suite this module implements. */
export function isCipherSuite(value: number): value is CipherSuite {
  return Object.values(CipherSuite).some((suite) => suite === value);
}

/** An SFrame operation failed; a receiver drops (and counts) the frame. */
export class SFrameError extends Error {
  override readonly name: string = "SFrameError";
}

/** The bytes do not start with a well-formed SFrame header, or a KID/CTR cannot be encoded. */
export class SFrameHeaderError extends SFrameError {
  override readonly name: string = "SFrameHeaderError";
}

/**
 * No decryption key is held for the frame's KID (never given, already retired, or a sending key). The RFC
 * allows buffering such a frame until its key arrives; `kid` says which key it waits for.
 */
export class SFrameUnknownKeyError extends SFrameError {
  override readonly name: string = "SFrameUnknownKeyError";

  constructor(
    readonly kid: bigint,
    reason: string,
  ) {
    super(`no decryption key for KID ${kid.toString()}: ${reason}`);
  }
}

/** The ciphertext, its header or the metadata was altered, or the frame was sealed with another key. */
export class SFrameAuthError extends SFrameError {
  override readonly name: string = "SFrameAuthError";
}

/** The frame's CTR was already accepted for its KID, or is older than the replay window remembers. */
export class SFrameReplayError extends SFrameError {
  override readonly name: string = "SFrameReplayError";
}

/** The key store was misused: a KID added twice or after retirement, a weak base key, a spent counter. */
export class SFrameKeyError extends SFrameError {
  override readonly name: string = "SFrameKeyError";
}

/** A decoded header; `size` is how many bytes it takes at the start of the frame. */
export interface SFrameHeader {
  readonly kid: bigint;
  readonly ctr: bigint;
  readonly size: number;
}

/** An opened frame: the key and counter it was sealed with, and its plaintext. */
export interface Decrypted {
  readonly kid: bigint;
  readonly ctr: bigint;
  readonly plaintext: Uint8Array<ArrayBuffer>;
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const KEY_LABEL = encoder.encode("SFrame 1.0 Secret key ");
const SALT_LABEL = encoder.encode("SFrame 1.0 Secret salt ");

/** WebCrypto takes only ArrayBuffer-backed views; copies a view of any other buffer. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function checkU64(name: string, value: bigint, error: new (message: string) => SFrameError): void {
  if (value < 0n || value > MAX_U64) {
    throw new error(`${name} ${value.toString()} is outside 0..2^64-1`);
  }
}

function minimalLength(value: bigint): number {
  let length = 1;
  while (value >> BigInt(8 * length) > 0n) length++;
  return length;
}

function writeBig(out: Uint8Array, offset: number, value: bigint, length: number): void {
  for (let i = length - 1; i >= 0; i--) {
    out[offset + i] = Number(value & 0xffn);
    value >>= 8n;
  }
}

/** The header for (KID, CTR): values 0-7 inside the config byte, larger ones in the fewest bytes. */
export function encodeHeader(kid: bigint, ctr: bigint): Uint8Array<ArrayBuffer> {
  checkU64("KID", kid, SFrameHeaderError);
  checkU64("CTR", ctr, SFrameHeaderError);
  const kidLength = kid < 8n ? 0 : minimalLength(kid);
  const ctrLength = ctr < 8n ? 0 : minimalLength(ctr);
  const header = new Uint8Array(1 + kidLength + ctrLength);
  let config = 0;
  if (kidLength === 0) {
    config |= Number(kid) << 4;
  } else {
    config |= 0x80 | ((kidLength - 1) << 4);
    writeBig(header, 1, kid, kidLength);
  }
  if (ctrLength === 0) {
    config |= Number(ctr);
  } else {
    config |= 0x08 | (ctrLength - 1);
    writeBig(header, 1 + kidLength, ctr, ctrLength);
  }
  header[0] = config;
  return header;
}

function readField(data: Uint8Array, offset: number, length: number, name: string): bigint {
  if (data.length < offset + length) {
    throw new SFrameHeaderError(
      `header cut short: ${name} needs ${length} bytes, ${data.length - offset} left`,
    );
  }
  let value = 0n;
  for (const byte of data.subarray(offset, offset + length)) value = (value << 8n) | BigInt(byte);
  if (value < 8n || minimalLength(value) !== length) {
    throw new SFrameHeaderError(
      `${name} ${value.toString()} is not in its minimal encoding (${length} bytes)`,
    );
  }
  return value;
}

/** Parses the header at the start of `data`; any encoding section 4.3 does not produce is refused. */
export function decodeHeader(data: Uint8Array): SFrameHeader {
  const config = data[0];
  if (config === undefined) throw new SFrameHeaderError("empty frame: no SFrame header");
  let offset = 1;
  let kid = BigInt((config >> 4) & 0x07);
  if ((config & 0x80) !== 0) {
    const kidLength = ((config >> 4) & 0x07) + 1;
    kid = readField(data, offset, kidLength, "KID");
    offset += kidLength;
  }
  let ctr = BigInt(config & 0x07);
  if ((config & 0x08) !== 0) {
    const ctrLength = (config & 0x07) + 1;
    ctr = readField(data, offset, ctrLength, "CTR");
    offset += ctrLength;
  }
  return { kid, ctr, size: offset };
}

function label(prefix: Uint8Array, suite: CipherSuite, kid: bigint): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(prefix.length + 10);
  out.set(prefix);
  const view = new DataView(out.buffer);
  view.setBigUint64(prefix.length, kid);
  view.setUint16(prefix.length + 8, suite);
  return out;
}

/** The HKDF info of the sframe_key: the label, KID as 8 bytes, suite as 2 bytes (big-endian). */
export function keyLabel(suite: CipherSuite, kid: bigint): Uint8Array<ArrayBuffer> {
  return label(KEY_LABEL, suite, kid);
}

/** The HKDF info of the sframe_salt, built like `keyLabel`. */
export function saltLabel(suite: CipherSuite, kid: bigint): Uint8Array<ArrayBuffer> {
  return label(SALT_LABEL, suite, kid);
}

/** sframe_key and sframe_salt for `baseKey` under KID: HKDF (Extract with an empty salt, then Expand). */
export async function deriveKeySalt(
  suite: CipherSuite,
  kid: bigint,
  baseKey: Uint8Array,
): Promise<{ key: Uint8Array<ArrayBuffer>; salt: Uint8Array<ArrayBuffer> }> {
  checkU64("KID", kid, SFrameKeyError);
  const params = SUITE_PARAMS[suite];
  const ikm = await crypto.subtle.importKey("raw", own(baseKey), "HKDF", false, ["deriveBits"]);
  const expand = async (info: Uint8Array<ArrayBuffer>, length: number) =>
    new Uint8Array(
      await crypto.subtle.deriveBits({ name: "HKDF", hash: params.hash, salt: EMPTY, info }, ikm, 8 * length),
    );
  const [key, salt] = await Promise.all([
    expand(keyLabel(suite, kid), params.nk),
    expand(saltLabel(suite, kid), params.nn),
  ]);
  return { key, salt };
}

interface Aead {
  seal(
    nonce: Uint8Array<ArrayBuffer>,
    aad: Uint8Array,
    plaintext: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer>>;
  open(
    nonce: Uint8Array<ArrayBuffer>,
    aad: Uint8Array,
    ciphertext: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer>>;
}

class GcmAead implements Aead {
  private constructor(private readonly key: CryptoKey) {}

  static async create(key: Uint8Array<ArrayBuffer>): Promise<GcmAead> {
    return new GcmAead(await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]));
  }

  async seal(nonce: Uint8Array<ArrayBuffer>, aad: Uint8Array, plaintext: Uint8Array) {
    const params = { name: "AES-GCM", iv: nonce, additionalData: own(aad), tagLength: 128 };
    return new Uint8Array(await crypto.subtle.encrypt(params, this.key, own(plaintext)));
  }

  async open(nonce: Uint8Array<ArrayBuffer>, aad: Uint8Array, ciphertext: Uint8Array) {
    if (ciphertext.length < 16) {
      throw new SFrameAuthError(`ciphertext of ${ciphertext.length} bytes is shorter than its tag`);
    }
    const params = { name: "AES-GCM", iv: nonce, additionalData: own(aad), tagLength: 128 };
    try {
      return new Uint8Array(await crypto.subtle.decrypt(params, this.key, own(ciphertext)));
    } catch {
      throw new SFrameAuthError("authentication tag does not match");
    }
  }
}

/** The compound AEAD of section 4.5.1: AES-CTR, then HMAC over lengths, nonce, AAD and ciphertext. */
class CtrHmacAead implements Aead {
  private constructor(
    private readonly aesKey: CryptoKey,
    private readonly macKey: CryptoKey,
    private readonly nt: number,
  ) {}

  static async create(key: Uint8Array<ArrayBuffer>, params: SuiteParams, nka: number): Promise<CtrHmacAead> {
    const [aesKey, macKey] = await Promise.all([
      crypto.subtle.importKey("raw", key.slice(0, nka), "AES-CTR", false, ["encrypt", "decrypt"]),
      crypto.subtle.importKey("raw", key.slice(nka), { name: "HMAC", hash: params.hash }, false, ["sign"]),
    ]);
    return new CtrHmacAead(aesKey, macKey, params.nt);
  }

  private async tag(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    const lengths = new Uint8Array(24);
    const view = new DataView(lengths.buffer);
    view.setBigUint64(0, BigInt(aad.length));
    view.setBigUint64(8, BigInt(ciphertext.length));
    view.setBigUint64(16, BigInt(this.nt));
    const mac = await crypto.subtle.sign("HMAC", this.macKey, concat(lengths, nonce, aad, ciphertext));
    return new Uint8Array(mac, 0, this.nt);
  }

  private async ctr(nonce: Uint8Array, data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const counter = concat(nonce, new Uint8Array(4));
    return new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-CTR", counter, length: 32 }, this.aesKey, own(data)),
    );
  }

  async seal(nonce: Uint8Array<ArrayBuffer>, aad: Uint8Array, plaintext: Uint8Array) {
    const ciphertext = await this.ctr(nonce, plaintext);
    return concat(ciphertext, await this.tag(nonce, aad, ciphertext));
  }

  async open(nonce: Uint8Array<ArrayBuffer>, aad: Uint8Array, ciphertext: Uint8Array) {
    if (ciphertext.length < this.nt) {
      throw new SFrameAuthError(`ciphertext of ${ciphertext.length} bytes is shorter than its tag`);
    }
    const inner = ciphertext.subarray(0, ciphertext.length - this.nt);
    const expected = await this.tag(nonce, aad, inner);
    const received = ciphertext.subarray(inner.length);
    let difference = 0;
    for (let i = 0; i < this.nt; i++) difference |= (expected[i] ?? 0) ^ (received[i] ?? 0);
    if (difference !== 0) throw new SFrameAuthError("authentication tag does not match");
    return this.ctr(nonce, inner);
  }
}

async function makeAead(suite: CipherSuite, key: Uint8Array): Promise<Aead> {
  const params = SUITE_PARAMS[suite];
  if (key.length !== params.nk) {
    throw new SFrameKeyError(`suite ${suite} needs a ${params.nk}-byte key, got ${key.length}`);
  }
  const copy = new Uint8Array(key);
  return params.nka === null ? GcmAead.create(copy) : CtrHmacAead.create(copy, params, params.nka);
}

function checkNonce(suite: CipherSuite, nonce: Uint8Array): Uint8Array<ArrayBuffer> {
  const nn = SUITE_PARAMS[suite].nn;
  if (nonce.length !== nn) {
    throw new SFrameKeyError(`suite ${suite} needs a ${nn}-byte nonce, got ${nonce.length}`);
  }
  return own(nonce);
}

/** The suite's AEAD.Encrypt: ciphertext with its (possibly truncated) tag appended. */
export async function aeadEncrypt(
  suite: CipherSuite,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const checked = checkNonce(suite, nonce);
  return (await makeAead(suite, key)).seal(checked, aad, plaintext);
}

/** The suite's AEAD.Decrypt; a wrong tag throws `SFrameAuthError`. */
export async function aeadDecrypt(
  suite: CipherSuite,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const checked = checkNonce(suite, nonce);
  return (await makeAead(suite, key)).open(checked, aad, ciphertext);
}

/**
 * One KID's derived key and salt, with its WebCrypto keys imported once: seals and opens whole SFrame
 * ciphertexts. Stateless about counters: the caller guarantees a CTR is never sealed twice
 * (`SFrameContext` does).
 */
export class SFrameKey {
  private constructor(
    readonly suite: CipherSuite,
    readonly kid: bigint,
    private readonly aead: Aead,
    private readonly salt: Uint8Array<ArrayBuffer>,
  ) {}

  static async create(
    suite: CipherSuite,
    kid: bigint,
    key: Uint8Array,
    salt: Uint8Array,
  ): Promise<SFrameKey> {
    const nn = SUITE_PARAMS[suite].nn;
    if (salt.length !== nn) {
      throw new SFrameKeyError(`suite ${suite} needs a ${nn}-byte salt, got ${salt.length}`);
    }
    return new SFrameKey(suite, kid, await makeAead(suite, key), new Uint8Array(salt));
  }

  static async derive(suite: CipherSuite, kid: bigint, baseKey: Uint8Array): Promise<SFrameKey> {
    const { key, salt } = await deriveKeySalt(suite, kid, baseKey);
    return SFrameKey.create(suite, kid, key, salt);
  }

  /** sframe_salt XOR CTR, as an Nn-byte big-endian string. */
  nonce(ctr: bigint): Uint8Array<ArrayBuffer> {
    checkU64("CTR", ctr, SFrameHeaderError);
    const nonce = new Uint8Array(this.salt);
    const view = new DataView(nonce.buffer);
    const offset = nonce.length - 8;
    view.setBigUint64(offset, view.getBigUint64(offset) ^ ctr);
    return nonce;
  }

  /** header || AEAD.Encrypt(sframe_key, nonce, header || metadata, plaintext). */
  async seal(
    ctr: bigint,
    plaintext: Uint8Array,
    metadata: Uint8Array = EMPTY,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const header = encodeHeader(this.kid, ctr);
    const body = await this.aead.seal(this.nonce(ctr), concat(header, metadata), plaintext);
    return concat(header, body);
  }

  /** The plaintext of `frame`, whose header (already decoded, with this key's KID) is `header`. */
  async open(
    header: SFrameHeader,
    frame: Uint8Array,
    metadata: Uint8Array = EMPTY,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (header.kid !== this.kid) {
      throw new SFrameUnknownKeyError(header.kid, `this key is KID ${this.kid.toString()}`);
    }
    const aad = concat(frame.subarray(0, header.size), metadata);
    return this.aead.open(this.nonce(header.ctr), aad, frame.subarray(header.size));
  }
}

/**
 * Which of the last `size` CTR values (up to the highest accepted) were accepted. Slot `ctr % size` holds
 * the last CTR accepted there, so a CTR inside the window was seen exactly when its slot holds it: any other
 * value in that slot differs from it by a multiple of `size`.
 */
class ReplayWindow {
  private highest = -1n;
  private readonly seen: (bigint | undefined)[];
  private readonly size: bigint;

  constructor(size: number) {
    this.size = BigInt(size);
    this.seen = new Array<bigint | undefined>(size);
  }

  check(ctr: bigint): void {
    if (ctr + this.size <= this.highest) {
      throw new SFrameReplayError(
        `CTR ${ctr.toString()} is older than the replay window (newest ${this.highest.toString()})`,
      );
    }
    if (this.seen[Number(ctr % this.size)] === ctr) {
      throw new SFrameReplayError(`CTR ${ctr.toString()} was already accepted`);
    }
  }

  accept(ctr: bigint): void {
    this.seen[Number(ctr % this.size)] = ctr;
    if (ctr > this.highest) this.highest = ctr;
  }
}

interface Sending {
  readonly key: SFrameKey;
  nextCtr: bigint;
}

interface Receiving {
  readonly key: SFrameKey;
  readonly window: ReplayWindow;
}

export interface SFrameContextOptions {
  /** CTR values remembered per decryption KID (default `DEFAULT_REPLAY_WINDOW`). */
  readonly replayWindow?: number;
}

/**
 * The keys of one SFrame session (one cipher suite), by KID, as section 4.4.1 prescribes.
 *
 * A key is added for encryption (this client sends with it; its CTR starts at 0 and only goes up) or for
 * decryption (another sender's; its replay window rejects a CTR accepted before or too old), never both.
 * A retired KID can never be added again: a fresh key must have a fresh KID, so no nonce is ever reused and
 * no frame from before a rotation is accepted after it. Safe under concurrent calls: a CTR is taken before
 * any await, and a decrypted CTR is checked again before it counts.
 */
export class SFrameContext {
  private readonly sending = new Map<bigint, Sending>();
  private readonly receiving = new Map<bigint, Receiving>();
  private readonly retired = new Set<bigint>();
  private readonly replayWindow: number;

  constructor(
    readonly suite: CipherSuite,
    options: SFrameContextOptions = {},
  ) {
    this.replayWindow = options.replayWindow ?? DEFAULT_REPLAY_WINDOW;
    if (!Number.isInteger(this.replayWindow) || this.replayWindow < 1) {
      throw new SFrameKeyError(`replay window of ${this.replayWindow} CTR values is below 1`);
    }
  }

  private checkNew(kid: bigint): void {
    if (this.hasKey(kid)) throw new SFrameKeyError(`KID ${kid.toString()} already has a key`);
    if (this.retired.has(kid)) {
      throw new SFrameKeyError(`KID ${kid.toString()} was retired; a new key needs a new KID`);
    }
  }

  private async newKey(kid: bigint, baseKey: Uint8Array): Promise<SFrameKey> {
    this.checkNew(kid);
    if (baseKey.length < MIN_BASE_KEY_SIZE) {
      throw new SFrameKeyError(`base key of ${baseKey.length} bytes is under ${MIN_BASE_KEY_SIZE}`);
    }
    const key = await SFrameKey.derive(this.suite, kid, baseKey);
    this.checkNew(kid);
    return key;
  }

  /** This client will send under KID with `baseKey`; no other sender may hold this base key. */
  async addEncryptionKey(kid: bigint, baseKey: Uint8Array): Promise<void> {
    const key = await this.newKey(kid, baseKey);
    this.sending.set(kid, { key, nextCtr: 0n });
  }

  /** Frames under KID (another sender's) can be opened from now on. */
  async addDecryptionKey(kid: bigint, baseKey: Uint8Array): Promise<void> {
    const key = await this.newKey(kid, baseKey);
    this.receiving.set(kid, { key, window: new ReplayWindow(this.replayWindow) });
  }

  /** Forgets KID's key for good; its frames fail with `SFrameUnknownKeyError` from now on. */
  retireKey(kid: bigint): void {
    if (!this.sending.delete(kid) && !this.receiving.delete(kid)) {
      throw new SFrameKeyError(`KID ${kid.toString()} has no key to retire`);
    }
    this.retired.add(kid);
  }

  hasKey(kid: bigint): boolean {
    return this.sending.has(kid) || this.receiving.has(kid);
  }

  /** Seals one frame under KID's sending key with its next CTR. */
  async encrypt(
    kid: bigint,
    plaintext: Uint8Array,
    metadata: Uint8Array = EMPTY,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const sending = this.sending.get(kid);
    if (sending === undefined) {
      throw new SFrameKeyError(`KID ${kid.toString()} is not an encryption key of this context`);
    }
    const ctr = sending.nextCtr;
    if (ctr > MAX_U64) {
      throw new SFrameKeyError(`KID ${kid.toString()} has used every CTR value; rotate to a new key`);
    }
    sending.nextCtr = ctr + 1n;
    return sending.key.seal(ctr, plaintext, metadata);
  }

  private unknownReason(kid: bigint): string {
    if (this.sending.has(kid)) return "it is this client's own encryption key";
    if (this.retired.has(kid)) return "the key was retired";
    return "no key was given for it";
  }

  /** Opens one frame; its CTR counts as seen only when it authenticates. */
  async decrypt(frame: Uint8Array, metadata: Uint8Array = EMPTY): Promise<Decrypted> {
    const header = decodeHeader(frame);
    const receiving = this.receiving.get(header.kid);
    if (receiving === undefined) throw new SFrameUnknownKeyError(header.kid, this.unknownReason(header.kid));
    receiving.window.check(header.ctr);
    const plaintext = await receiving.key.open(header, frame, metadata);
    if (this.receiving.get(header.kid) !== receiving) {
      throw new SFrameUnknownKeyError(header.kid, this.unknownReason(header.kid));
    }
    receiving.window.check(header.ctr);
    receiving.window.accept(header.ctr);
    return { kid: header.kid, ctr: header.ctr, plaintext };
  }
}
