/**
 * The byte-level half of end-to-end encryption (docs/E2EE.md), free of state: identity keys, safety
 * numbers, the `HELLO` and `MEDIA_KEY` key messages, and the pairwise wrap of a media key.
 *
 * This is the TypeScript twin of the same functions in `client/python/e2ee.py`; tests/data/e2ee-vectors.json
 * keeps the two byte for byte identical. Everything runs on WebCrypto: ECDH on P-256 (the shared secret is
 * the x-coordinate, 32 bytes), HKDF-SHA256, AES-256-GCM. Every way a key message can be refused throws a
 * `KeyMessageError` whose `kind` a receiver counts by.
 */
import { CipherSuite, isCipherSuite } from "./sframe";

export const VERSION = 1;
export const HELLO = 1;
export const MEDIA_KEY = 2;
export const PUBLIC_KEY_SIZE = 65;
export const WRAP_NONCE_SIZE = 12;
export const BASE_KEY_SIZE = 32;
/** suite (2) + kid (8) + base_key (32). */
export const MEDIA_KEY_PLAINTEXT_SIZE = 42;
const TAG_SIZE = 16;
/** version, type, nonce, ciphertext and tag. */
export const MEDIA_KEY_SIZE = 2 + WRAP_NONCE_SIZE + MEDIA_KEY_PLAINTEXT_SIZE + TAG_SIZE;
export const HELLO_SIZE = 2 + PUBLIC_KEY_SIZE;
export const DEFAULT_SUITE = CipherSuite.AES_128_GCM_SHA256_128;

const encoder = new TextEncoder();
const SAFETY_LABEL = encoder.encode("DarkTower safety number v1");
const WRAP_SALT = encoder.encode("DarkTower E2EE v1");
const WRAP_INFO = encoder.encode("DarkTower media key wrap");
const AAD_LABEL = encoder.encode("DarkTower media key v1");
const P256 = { name: "ECDH", namedCurve: "P-256" } as const;

/** Why a key message was refused; receivers count refusals by it. */
export type KeyMessageRefusal =
  | "malformed"
  | "bad_identity"
  | "identity_changed"
  | "unknown_sender"
  | "auth"
  | "stale_kid"
  | "unsupported_suite";

/** A key message was refused; it changes no state. */
export class KeyMessageError extends Error {
  override readonly name = "KeyMessageError";

  constructor(
    readonly kind: KeyMessageRefusal,
    message: string,
  ) {
    super(message);
  }
}

/** This client's identity: the ECDH private key and its public key, uncompressed (65 bytes). */
export interface Identity {
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array<ArrayBuffer>;
}

/** A decoded key message. */
export type KeyMessage =
  | { readonly type: typeof HELLO; readonly publicKey: Uint8Array<ArrayBuffer> }
  | {
      readonly type: typeof MEDIA_KEY;
      readonly nonce: Uint8Array<ArrayBuffer>;
      readonly ciphertext: Uint8Array<ArrayBuffer>;
    };

/** The contents of a `MEDIA_KEY`: one sender's media key. */
export interface MediaKey {
  readonly suite: CipherSuite;
  readonly kid: bigint;
  readonly baseKey: Uint8Array<ArrayBuffer>;
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

/** A fresh P-256 identity; the private key never leaves WebCrypto. */
export async function generateIdentity(): Promise<Identity> {
  const pair = await crypto.subtle.generateKey(P256, false, ["deriveBits"]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

/** An identity from a known private scalar `d` (32 bytes) and its public key: for test vectors only. */
export async function importIdentity(d: Uint8Array, publicKey: Uint8Array): Promise<Identity> {
  const base64url = (bytes: Uint8Array) =>
    btoa(String.fromCharCode(...bytes))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
  const jwk: JsonWebKey = {
    kty: "EC",
    crv: "P-256",
    d: base64url(d),
    x: base64url(publicKey.subarray(1, 33)),
    y: base64url(publicKey.subarray(33, 65)),
  };
  const privateKey = await crypto.subtle.importKey("jwk", jwk, P256, false, ["deriveBits"]);
  return { privateKey, publicKey: new Uint8Array(publicKey) };
}

/** The peer's public key as a WebCrypto key; anything but an uncompressed point on P-256 is refused. */
export async function importPublicKey(publicKey: Uint8Array): Promise<CryptoKey> {
  if (publicKey.length !== PUBLIC_KEY_SIZE || publicKey[0] !== 0x04) {
    throw new KeyMessageError("bad_identity", "an identity key is 65 bytes starting with 0x04");
  }
  try {
    return await crypto.subtle.importKey("raw", new Uint8Array(publicKey), P256, false, []);
  } catch {
    throw new KeyMessageError("bad_identity", "the identity key is not a point on P-256");
  }
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}

/** The 35-character safety number of two identity keys (the same whichever is first). */
export async function safetyNumber(a: Uint8Array, b: Uint8Array): Promise<string> {
  const [lo, hi] = compare(a, b) <= 0 ? [a, b] : [b, a];
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", concat(SAFETY_LABEL, lo, hi)));
  const groups: string[] = [];
  for (let group = 0; group < 6; group++) {
    let value = 0;
    for (const byte of digest.subarray(5 * group, 5 * group + 5)) value = value * 256 + byte;
    groups.push(String(value % 100_000).padStart(5, "0"));
  }
  return groups.join(" ");
}

export function encodeHello(publicKey: Uint8Array): Uint8Array<ArrayBuffer> {
  if (publicKey.length !== PUBLIC_KEY_SIZE) {
    throw new KeyMessageError("bad_identity", `an identity key is ${PUBLIC_KEY_SIZE} bytes`);
  }
  return concat(Uint8Array.of(VERSION, HELLO), publicKey);
}

/** Parses a key message; the wrong version, an unknown type, a truncated body or trailing bytes throw. */
export function decodeKeyMessage(payload: Uint8Array): KeyMessage {
  if (payload.length < 2) {
    throw new KeyMessageError("malformed", `key message of ${payload.length} bytes has no version and type`);
  }
  const [version, type] = payload;
  if (version !== VERSION) throw new KeyMessageError("malformed", `key message version ${version} is not 1`);
  const expected = type === HELLO ? HELLO_SIZE : type === MEDIA_KEY ? MEDIA_KEY_SIZE : null;
  if (expected === null) throw new KeyMessageError("malformed", `unknown key message type ${type}`);
  if (payload.length !== expected) {
    const name = type === HELLO ? "HELLO" : "MEDIA_KEY";
    throw new KeyMessageError("malformed", `${name} is ${expected} bytes, got ${payload.length}`);
  }
  const body = new Uint8Array(payload.subarray(2));
  if (type === HELLO) return { type: HELLO, publicKey: body };
  return {
    type: MEDIA_KEY,
    nonce: body.slice(0, WRAP_NONCE_SIZE),
    ciphertext: body.slice(WRAP_NONCE_SIZE),
  };
}

/** ECDH of `own` with the `other` public key: the shared point's x-coordinate, 32 bytes. */
export async function sharedSecret(own: Identity, other: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const peer = await importPublicKey(other);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, own.privateKey, 256));
}

/**
 * The 32-byte wrap key for media keys that `sender` sends to `recipient` (one per direction). `own` is
 * whichever of the two this client is: its private key meets the other side's public key.
 */
export async function wrapKeyBytes(
  own: Identity,
  other: Uint8Array,
  senderPublic: Uint8Array,
  recipientPublic: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const shared = await sharedSecret(own, other);
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const info = concat(WRAP_INFO, senderPublic, recipientPublic);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: WRAP_SALT, info },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/** The wrap key as an AES-256-GCM key. */
export async function wrapKey(
  own: Identity,
  other: Uint8Array,
  senderPublic: Uint8Array,
  recipientPublic: Uint8Array,
): Promise<CryptoKey> {
  const bytes = await wrapKeyBytes(own, other, senderPublic, recipientPublic);
  return crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]);
}

function lengthPrefixed(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  if (bytes.length > 0xffff) throw new KeyMessageError("malformed", "participant id over 65535 bytes");
  const out = new Uint8Array(2 + bytes.length);
  new DataView(out.buffer).setUint16(0, bytes.length);
  out.set(bytes, 2);
  return out;
}

/** The AAD of a `MEDIA_KEY` from `senderId` to `recipientId`. */
export function mediaKeyAad(senderId: string, recipientId: string): Uint8Array<ArrayBuffer> {
  return concat(AAD_LABEL, lengthPrefixed(senderId), lengthPrefixed(recipientId));
}

export function encodeMediaKeyPlaintext(key: MediaKey): Uint8Array<ArrayBuffer> {
  if (key.baseKey.length !== BASE_KEY_SIZE) {
    throw new KeyMessageError("malformed", `a base key is ${BASE_KEY_SIZE} bytes`);
  }
  const out = new Uint8Array(MEDIA_KEY_PLAINTEXT_SIZE);
  const view = new DataView(out.buffer);
  view.setUint16(0, key.suite);
  view.setBigUint64(2, key.kid);
  out.set(key.baseKey, 10);
  return out;
}

export function decodeMediaKeyPlaintext(plaintext: Uint8Array): MediaKey {
  if (plaintext.length !== MEDIA_KEY_PLAINTEXT_SIZE) {
    throw new KeyMessageError("malformed", `media key plaintext is ${MEDIA_KEY_PLAINTEXT_SIZE} bytes`);
  }
  const view = new DataView(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
  const suite = view.getUint16(0);
  if (!isCipherSuite(suite)) {
    throw new KeyMessageError("unsupported_suite", `cipher suite 0x${suite.toString(16)} is not supported`);
  }
  return { suite, kid: view.getBigUint64(2), baseKey: new Uint8Array(plaintext.subarray(10)) };
}

/** A `MEDIA_KEY` message carrying `key`, sealed under `wrap` for the pair (`senderId`, `recipientId`). */
export async function sealMediaKey(
  wrap: CryptoKey,
  senderId: string,
  recipientId: string,
  key: MediaKey,
  nonce: Uint8Array<ArrayBuffer> = crypto.getRandomValues(new Uint8Array(WRAP_NONCE_SIZE)),
): Promise<Uint8Array<ArrayBuffer>> {
  if (nonce.length !== WRAP_NONCE_SIZE) throw new KeyMessageError("malformed", "a wrap nonce is 12 bytes");
  const params = { name: "AES-GCM", iv: nonce, additionalData: mediaKeyAad(senderId, recipientId) };
  const sealed = await crypto.subtle.encrypt(params, wrap, encodeMediaKeyPlaintext(key));
  return concat(Uint8Array.of(VERSION, MEDIA_KEY), nonce, new Uint8Array(sealed));
}

/** Opens a decoded `MEDIA_KEY` from `senderId` to `recipientId`; a wrong tag throws (kind "auth"). */
export async function openMediaKey(
  wrap: CryptoKey,
  senderId: string,
  recipientId: string,
  message: Extract<KeyMessage, { type: typeof MEDIA_KEY }>,
): Promise<MediaKey> {
  const params = { name: "AES-GCM", iv: message.nonce, additionalData: mediaKeyAad(senderId, recipientId) };
  let plaintext: ArrayBuffer;
  try {
    plaintext = await crypto.subtle.decrypt(params, wrap, message.ciphertext);
  } catch {
    throw new KeyMessageError("auth", `MEDIA_KEY from ${senderId} does not authenticate`);
  }
  return decodeMediaKeyPlaintext(new Uint8Array(plaintext));
}
