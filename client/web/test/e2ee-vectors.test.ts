/**
 * keymessages.ts and SFrame sealing against the cross-language vectors the Python implementation wrote
 * (tests/data/e2ee-vectors.json, from tests/web/make_e2ee_vectors.py): the same identity keys must give
 * the same ECDH secret, wrap keys, safety number, HELLO and MEDIA_KEY bytes and media frame, and every
 * payload the Python side refuses must be refused here for the same reason.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import { METADATA_SIZE } from "../src/lib/e2ee";
import { HEADER_SIZE, replacePayload } from "../src/lib/frame";
import {
  HELLO,
  KeyMessageError,
  decodeKeyMessage,
  encodeHello,
  importIdentity,
  importPublicKey,
  mediaKeyAad,
  openMediaKey,
  safetyNumber,
  sealMediaKey,
  sharedSecret,
  wrapKey,
  wrapKeyBytes,
  type Identity,
} from "../src/lib/keymessages";
import { SFrameContext, SFrameKey, decodeHeader, isCipherSuite, type CipherSuite } from "../src/lib/sframe";
import { fromHex, toHex } from "./hex";

interface Party {
  participant_id: string;
  private_scalar: string;
  public_key: string;
  hello: string;
}

interface Vectors {
  sender: Party;
  recipient: Party;
  ecdh_x: string;
  wrap_key_sender_to_recipient: string;
  wrap_key_recipient_to_sender: string;
  safety_number: string;
  media_key: {
    cipher_suite: number;
    kid: string;
    base_key: string;
    nonce: string;
    aad: string;
    message: string;
  };
  media_frame: { ctr: string; metadata: string; plaintext: string; frame: string };
  refused: { name: string; payload: string; refusal: string }[];
}

const vectors = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../../tests/data/e2ee-vectors.json", import.meta.url)), "utf8"),
) as Vectors;

function suiteOf(value: number): CipherSuite {
  if (!isCipherSuite(value)) throw new Error(`the vectors name unknown suite ${value}`);
  return value;
}

function identity(party: Party): Promise<Identity> {
  return importIdentity(fromHex(party.private_scalar), fromHex(party.public_key));
}

const { sender, recipient } = vectors;
const senderPublic = fromHex(sender.public_key);
const recipientPublic = fromHex(recipient.public_key);
const mediaKey = {
  suite: suiteOf(vectors.media_key.cipher_suite),
  kid: BigInt(vectors.media_key.kid),
  baseKey: new Uint8Array(fromHex(vectors.media_key.base_key)),
};

/** What the recipient makes of a key message from the sender: null when accepted, else the refusal. */
async function refusalOf(payload: Uint8Array): Promise<string | null> {
  const own = await identity(recipient);
  try {
    const message = decodeKeyMessage(payload);
    if (message.type === HELLO) {
      await importPublicKey(message.publicKey);
      return null;
    }
    const wrap = await wrapKey(own, senderPublic, senderPublic, recipientPublic);
    await openMediaKey(wrap, sender.participant_id, recipient.participant_id, message);
    return null;
  } catch (error) {
    if (error instanceof KeyMessageError) return error.kind;
    throw error;
  }
}

describe("cross-language E2EE vectors (Python wrote them)", () => {
  it("encodes both HELLOs and agrees on the ECDH secret from either side", async () => {
    const [alice, bob] = await Promise.all([identity(sender), identity(recipient)]);
    expect(toHex(encodeHello(alice.publicKey))).toBe(sender.hello);
    expect(toHex(encodeHello(bob.publicKey))).toBe(recipient.hello);
    expect(toHex(await sharedSecret(alice, recipientPublic))).toBe(vectors.ecdh_x);
    expect(toHex(await sharedSecret(bob, senderPublic))).toBe(vectors.ecdh_x);
  });

  it("derives both wrap keys and the safety number", async () => {
    const [alice, bob] = await Promise.all([identity(sender), identity(recipient)]);
    const toBob = vectors.wrap_key_sender_to_recipient;
    const toAlice = vectors.wrap_key_recipient_to_sender;
    expect(toHex(await wrapKeyBytes(alice, recipientPublic, senderPublic, recipientPublic))).toBe(toBob);
    expect(toHex(await wrapKeyBytes(bob, senderPublic, senderPublic, recipientPublic))).toBe(toBob);
    expect(toHex(await wrapKeyBytes(bob, senderPublic, recipientPublic, senderPublic))).toBe(toAlice);
    await expect(safetyNumber(senderPublic, recipientPublic)).resolves.toBe(vectors.safety_number);
    await expect(safetyNumber(recipientPublic, senderPublic)).resolves.toBe(vectors.safety_number);
  });

  it("seals the MEDIA_KEY to the same bytes and opens it", async () => {
    const [alice, bob] = await Promise.all([identity(sender), identity(recipient)]);
    const { participant_id: from } = sender;
    const { participant_id: to } = recipient;
    expect(toHex(mediaKeyAad(from, to))).toBe(vectors.media_key.aad);
    const out = await wrapKey(alice, recipientPublic, senderPublic, recipientPublic);
    const sealed = await sealMediaKey(
      out,
      from,
      to,
      mediaKey,
      new Uint8Array(fromHex(vectors.media_key.nonce)),
    );
    expect(toHex(sealed)).toBe(vectors.media_key.message);
    const message = decodeKeyMessage(fromHex(vectors.media_key.message));
    if (message.type === HELLO) throw new Error("not a MEDIA_KEY");
    const wrapIn = await wrapKey(bob, senderPublic, senderPublic, recipientPublic);
    const opened = await openMediaKey(wrapIn, from, to, message);
    expect({ ...opened, baseKey: toHex(opened.baseKey) }).toEqual({
      ...mediaKey,
      baseKey: vectors.media_key.base_key,
    });
  });

  it("seals and opens the media frame, metadata = the header's first 24 bytes", async () => {
    const { ctr, metadata, plaintext, frame } = vectors.media_frame;
    const frameBytes = fromHex(frame);
    expect(toHex(frameBytes.subarray(0, METADATA_SIZE))).toBe(metadata);
    const key = await SFrameKey.derive(mediaKey.suite, mediaKey.kid, mediaKey.baseKey);
    const sealed = await key.seal(BigInt(ctr), fromHex(plaintext), fromHex(metadata));
    const plainFrame = replacePayload(frameBytes, fromHex(plaintext));
    expect(toHex(replacePayload(plainFrame, sealed))).toBe(frame);
    const context = new SFrameContext(mediaKey.suite);
    await context.addDecryptionKey(mediaKey.kid, mediaKey.baseKey);
    const payload = frameBytes.subarray(HEADER_SIZE);
    expect(decodeHeader(payload).kid).toBe(mediaKey.kid);
    const opened = await context.decrypt(payload, frameBytes.subarray(0, METADATA_SIZE));
    expect(toHex(opened.plaintext)).toBe(plaintext);
  });

  it.each(vectors.refused)("refuses $name as $refusal", async ({ payload, refusal }) => {
    await expect(refusalOf(fromHex(payload))).resolves.toBe(refusal);
  });

  it("accepts the vectors' own HELLO and MEDIA_KEY", async () => {
    await expect(refusalOf(fromHex(sender.hello))).resolves.toBeNull();
    await expect(refusalOf(fromHex(vectors.media_key.message))).resolves.toBeNull();
  });
});
