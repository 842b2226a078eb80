/**
 * The end-to-end key manager of one participant (docs/E2EE.md): who holds which media key, when this
 * client's own key rotates, and sealing and opening media frames with SFrame (RFC 9605).
 *
 * Free of I/O and of clocks: the session feeds it signaling events (`joined`, `participantJoined`,
 * `participantLeft`, `receive`) and the time in milliseconds, and carries out the actions it returns (send a
 * key message, request a keyframe). The event methods run one at a time in call order (each waits for the
 * previous one), so the key messages they produce come out in a consistent order; `seal`, `open` and
 * `advance` read the state as it is and may run at any time.
 *
 * Keys: this client sends under one media key at a time, its KID being the epoch (0, 1, 2, ...). A
 * rotation makes the next epoch's key, sends it to every member whose identity is known, and switches to
 * it `ROTATION_DELAY_MS` later, so receivers hold it before the first frame needs it. Rotations requested
 * while one is pending merge into it: a newcomer gets the pending key; a leaver that already got the pending
 * key forces a fresh one (it must not read what follows), still never used before the switch. A receiver
 * keeps one SFrame context per sender and retires a sender's older keys `RETIRE_AFTER_MS` after the first
 * frame under a newer key authenticates. SFrame metadata is the first 24 bytes of the media frame header.
 */
import {
  BASE_KEY_SIZE,
  DEFAULT_SUITE,
  HELLO,
  KeyMessageError,
  decodeKeyMessage,
  encodeHello,
  generateIdentity,
  openMediaKey,
  safetyNumber,
  sealMediaKey,
  wrapKey,
  type Identity,
  type KeyMessageRefusal,
  type MediaKey,
} from "./keymessages";
import {
  SFrameAuthError,
  SFrameContext,
  SFrameHeaderError,
  SFrameKeyError,
  SFrameReplayError,
  SFrameUnknownKeyError,
  decodeHeader,
  type CipherSuite,
} from "./sframe";

export const ROTATION_DELAY_MS = 500;
export const RETIRE_AFTER_MS = 2000;
/** The part of the 28-byte media frame header that SFrame authenticates: all but `payload_length`. */
export const METADATA_SIZE = 24;

/** What the session must do for the key manager. */
export type KeyAction =
  /** Send a key message; `to` empty means everyone else in the meeting. */
  | { readonly type: "send"; readonly to: readonly string[]; readonly payload: Uint8Array }
  /** The sender's key arrived after its video frames were refused: ask for a keyframe of its video. */
  | { readonly type: "keyframe"; readonly participantId: string };

export type FrameRefusal = "malformed" | "unknown_key" | "retired" | "auth" | "replay";

export type Opened =
  | { readonly ok: true; readonly plaintext: Uint8Array<ArrayBuffer>; readonly kid: bigint }
  | { readonly ok: false; readonly refusal: FrameRefusal; readonly reason: string };

export const FRAME_REFUSALS: readonly FrameRefusal[] = [
  "malformed",
  "unknown_key",
  "retired",
  "auth",
  "replay",
];
export const KEY_MESSAGE_REFUSALS: readonly KeyMessageRefusal[] = [
  "malformed",
  "bad_identity",
  "identity_changed",
  "unknown_sender",
  "auth",
  "stale_kid",
  "unsupported_suite",
];

interface PeerIdentity {
  readonly publicKey: Uint8Array<ArrayBuffer>;
  /** Wraps media keys this client sends to the peer. */
  readonly wrapOut: CryptoKey;
  /** Opens media keys the peer sends to this client. */
  readonly wrapIn: CryptoKey;
  readonly safetyNumber: string;
}

interface Peer {
  readonly id: string;
  /** In this client's JoinResponse roster: it gets the current key; a newcomer makes this client rotate. */
  readonly existing: boolean;
  identity: PeerIdentity | null;
  /** A MEDIA_KEY from it authenticated: it holds the private key of its identity. */
  proven: boolean;
  /** It was sent one of this client's media keys (so its leaving calls for a rotation). */
  holdsOurKey: boolean;
  lastKid: bigint | null;
  readonly contexts: Map<CipherSuite, SFrameContext>;
  readonly held: Map<bigint, CipherSuite>;
  readonly retired: Set<bigint>;
  readonly retireAt: Map<bigint, number>;
  newestOpened: bigint | null;
  videoWaiting: boolean;
}

interface OwnKey extends MediaKey {
  readonly switchAtMs: number;
  readonly sentTo: Set<string>;
}

function zeroCounts<K extends string>(kinds: readonly K[]): Record<K, number> {
  return Object.fromEntries(kinds.map((kind) => [kind, 0])) as Record<K, number>;
}

export class KeyManager {
  /** Frames refused by `open`, by why; the object is live (the debug hooks show it as is). */
  readonly refusedFrames: Record<FrameRefusal, number> = zeroCounts(FRAME_REFUSALS);
  /** Key messages refused by `receive`, by why; live like `refusedFrames`. */
  readonly refusedKeyMessages: Record<KeyMessageRefusal, number> = zeroCounts(KEY_MESSAGE_REFUSALS);
  private readonly peers = new Map<string, Peer>();
  private readonly sending: SFrameContext;
  private selfId = "";
  private nextKid = 0n;
  private current: OwnKey | null = null;
  private pending: OwnKey | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly identity: Identity,
    readonly suite: CipherSuite,
  ) {
    this.sending = new SFrameContext(suite);
  }

  /** A manager with a fresh identity (kept for the page's life, across reconnects). */
  static async create(suite: CipherSuite = DEFAULT_SUITE, identity?: Identity): Promise<KeyManager> {
    return new KeyManager(identity ?? (await generateIdentity()), suite);
  }

  /** The KID frames are sealed under now (null before the first join). */
  get sendingKid(): bigint | null {
    return this.current?.kid ?? null;
  }

  /**
   * This client (re)joined as `selfId` with `roster` already there: every peer starts over, this client
   * sends under a brand-new key at once (nobody in this session has an older one) and says HELLO to all.
   */
  joined(selfId: string, roster: readonly string[], nowMs: number): Promise<KeyAction[]> {
    return this.serial(async () => {
      this.selfId = selfId;
      for (const peer of this.peers.values()) this.forget(peer);
      this.peers.clear();
      for (const id of roster) if (id !== selfId) this.peers.set(id, newPeer(id, true));
      if (this.pending !== null) this.sending.retireKey(this.pending.kid);
      this.pending = null;
      const key = await this.newKey(nowMs);
      this.switchTo(key);
      return [{ type: "send", to: [], payload: encodeHello(this.identity.publicKey) }];
    });
  }

  /** Someone joined after this client: its HELLO will make this client rotate. */
  participantJoined(participantId: string): Promise<KeyAction[]> {
    return this.serial(() => {
      if (participantId !== this.selfId && !this.peers.has(participantId)) {
        this.peers.set(participantId, newPeer(participantId, false));
      }
      return Promise.resolve([]);
    });
  }

  /** Someone left: its keys and identity are forgotten, and this client rotates if it held our key. */
  participantLeft(participantId: string, nowMs: number): Promise<KeyAction[]> {
    return this.serial(async () => {
      const peer = this.peers.get(participantId);
      if (peer === undefined) return [];
      this.peers.delete(participantId);
      this.forget(peer);
      if (!peer.holdsOurKey) return [];
      if (this.pending !== null && !this.pending.sentTo.has(participantId)) return [];
      return this.rotate(nowMs);
    });
  }

  /** A key message from `fromId`; a refused one is counted and changes nothing. */
  receive(fromId: string, payload: Uint8Array, nowMs: number): Promise<KeyAction[]> {
    return this.serial(async () => {
      try {
        const message = decodeKeyMessage(payload);
        if (message.type === HELLO) return await this.onHello(fromId, message.publicKey, nowMs);
        const peer = this.peers.get(fromId);
        if (peer === undefined || peer.identity === null) {
          throw new KeyMessageError("unknown_sender", `MEDIA_KEY from ${fromId} before its HELLO`);
        }
        const key = await openMediaKey(peer.identity.wrapIn, fromId, this.selfId, message);
        return await this.addPeerKey(peer, key);
      } catch (error) {
        if (!(error instanceof KeyMessageError)) throw error;
        this.refusedKeyMessages[error.kind]++;
        console.warn(`refused a key message from ${fromId}: ${error.message}`);
        return [];
      }
    });
  }

  /** Applies what time has made due: the pending switch, retirements. */
  advance(nowMs: number): void {
    if (this.pending !== null && nowMs >= this.pending.switchAtMs) this.switchTo(this.pending);
    for (const peer of this.peers.values()) {
      for (const [kid, at] of peer.retireAt) if (nowMs >= at) retire(peer, kid);
    }
  }

  /** Seals one frame payload under the current key; `metadata` is the frame header's first 24 bytes. */
  async seal(metadata: Uint8Array, payload: Uint8Array, nowMs: number): Promise<Uint8Array<ArrayBuffer>> {
    this.advance(nowMs);
    if (this.current === null) throw new SFrameKeyError("no media key before the first join");
    return this.sending.encrypt(this.current.kid, payload, metadata.subarray(0, METADATA_SIZE));
  }

  /** Opens one frame from `senderId`; `video` says whether a refusal should wait for a keyframe. */
  async open(
    senderId: string,
    frame: Uint8Array,
    metadata: Uint8Array,
    nowMs: number,
    video: boolean,
  ): Promise<Opened> {
    this.advance(nowMs);
    const opened = await this.tryOpen(senderId, frame, metadata.subarray(0, METADATA_SIZE), nowMs);
    if (!opened.ok) {
      this.refusedFrames[opened.refusal]++;
      if (video && opened.refusal === "unknown_key") {
        const peer = this.peers.get(senderId);
        if (peer !== undefined) peer.videoWaiting = true;
      }
    }
    return opened;
  }

  /** The safety number shared with `participantId`, once its HELLO arrived. */
  safetyNumber(participantId: string): string | null {
    return this.peers.get(participantId)?.identity?.safetyNumber ?? null;
  }

  /** Every known safety number, by participant id. */
  safetyNumbers(): Record<string, string> {
    const numbers: Record<string, string> = {};
    for (const peer of this.peers.values()) {
      if (peer.identity !== null) numbers[peer.id] = peer.identity.safetyNumber;
    }
    return numbers;
  }

  /** The identity key of `participantId` once a media key from it authenticated (it owns the key). */
  provenIdentity(participantId: string): Uint8Array | null {
    const peer = this.peers.get(participantId);
    return peer?.proven === true ? (peer.identity?.publicKey ?? null) : null;
  }

  /** Whether a key from `participantId` is held (its frames can be opened). */
  hasKeyFrom(participantId: string): boolean {
    return (this.peers.get(participantId)?.held.size ?? 0) > 0;
  }

  // --- internals ---------------------------------------------------------------------------------------

  private serial(step: () => Promise<KeyAction[]>): Promise<KeyAction[]> {
    const result = this.queue.then(step);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async onHello(fromId: string, publicKey: Uint8Array<ArrayBuffer>, nowMs: number) {
    if (fromId === this.selfId) throw new KeyMessageError("malformed", "a HELLO from this client itself");
    let peer = this.peers.get(fromId);
    if (peer === undefined) {
      peer = newPeer(fromId, false);
      this.peers.set(fromId, peer);
    }
    if (peer.identity !== null) {
      if (equal(peer.identity.publicKey, publicKey)) return [];
      throw new KeyMessageError("identity_changed", `${fromId} announced a second identity key`);
    }
    const own = this.identity;
    const [wrapOut, wrapIn, number] = await Promise.all([
      wrapKey(own, publicKey, own.publicKey, publicKey),
      wrapKey(own, publicKey, publicKey, own.publicKey),
      safetyNumber(own.publicKey, publicKey),
    ]);
    if (this.peers.get(fromId) !== peer) return [];
    peer.identity = { publicKey, wrapOut, wrapIn, safetyNumber: number };
    if (peer.existing) {
      const keys = [this.current, this.pending].filter((key): key is OwnKey => key !== null);
      return Promise.all(keys.map((key) => this.mediaKeyFor(peer, key)));
    }
    const actions: KeyAction[] = [{ type: "send", to: [fromId], payload: encodeHello(own.publicKey) }];
    if (this.pending !== null) {
      actions.push(await this.mediaKeyFor(peer, this.pending));
      return actions;
    }
    return [...actions, ...(await this.rotate(nowMs))];
  }

  private async addPeerKey(peer: Peer, key: MediaKey): Promise<KeyAction[]> {
    if (peer.lastKid !== null && key.kid <= peer.lastKid) {
      throw new KeyMessageError(
        "stale_kid",
        `MEDIA_KEY from ${peer.id} names KID ${key.kid.toString()}, not newer than ${peer.lastKid.toString()}`,
      );
    }
    let context = peer.contexts.get(key.suite);
    if (context === undefined) {
      context = new SFrameContext(key.suite);
      peer.contexts.set(key.suite, context);
    }
    await context.addDecryptionKey(key.kid, key.baseKey);
    peer.lastKid = key.kid;
    peer.held.set(key.kid, key.suite);
    peer.proven = true;
    if (!peer.videoWaiting) return [];
    peer.videoWaiting = false;
    return [{ type: "keyframe", participantId: peer.id }];
  }

  /** A new epoch's key in the sending context (not yet used). */
  private async newKey(nowMs: number): Promise<OwnKey> {
    const kid = this.nextKid++;
    const baseKey = crypto.getRandomValues(new Uint8Array(BASE_KEY_SIZE));
    await this.sending.addEncryptionKey(kid, baseKey);
    return { suite: this.suite, kid, baseKey, switchAtMs: nowMs + ROTATION_DELAY_MS, sentTo: new Set() };
  }

  /** Makes the pending key and sends it to every member whose identity is known. */
  private async rotate(nowMs: number): Promise<KeyAction[]> {
    const key = await this.newKey(nowMs);
    if (this.pending !== null) this.sending.retireKey(this.pending.kid);
    this.pending = key;
    const known = [...this.peers.values()].filter((peer) => peer.identity !== null);
    return Promise.all(known.map((peer) => this.mediaKeyFor(peer, key)));
  }

  private async mediaKeyFor(peer: Peer, key: OwnKey): Promise<KeyAction> {
    const identity = peer.identity;
    if (identity === null) throw new Error(`no identity for ${peer.id}`);
    key.sentTo.add(peer.id);
    peer.holdsOurKey = true;
    const payload = await sealMediaKey(identity.wrapOut, this.selfId, peer.id, key);
    return { type: "send", to: [peer.id], payload };
  }

  private switchTo(key: OwnKey): void {
    const previous = this.current;
    this.current = key;
    if (this.pending === key) this.pending = null;
    if (previous !== null && previous.kid !== key.kid) this.sending.retireKey(previous.kid);
  }

  private forget(peer: Peer): void {
    peer.identity = null;
    peer.held.clear();
    peer.contexts.clear();
    peer.retireAt.clear();
  }

  private async tryOpen(
    senderId: string,
    frame: Uint8Array,
    metadata: Uint8Array,
    nowMs: number,
  ): Promise<Opened> {
    const peer = this.peers.get(senderId);
    let kid: bigint;
    try {
      kid = decodeHeader(frame).kid;
    } catch (error) {
      return refused("malformed", error);
    }
    if (peer === undefined) return { ok: false, refusal: "unknown_key", reason: `no keys from ${senderId}` };
    const suite = peer.held.get(kid);
    const context = suite === undefined ? undefined : peer.contexts.get(suite);
    if (context === undefined) {
      const refusal = peer.retired.has(kid) ? "retired" : "unknown_key";
      return { ok: false, refusal, reason: `no key for KID ${kid.toString()} from ${senderId}` };
    }
    try {
      const { plaintext } = await context.decrypt(frame, metadata);
      if (peer.newestOpened === null || kid > peer.newestOpened) {
        peer.newestOpened = kid;
        for (const older of peer.held.keys()) {
          if (older < kid && !peer.retireAt.has(older)) peer.retireAt.set(older, nowMs + RETIRE_AFTER_MS);
        }
      }
      return { ok: true, plaintext, kid };
    } catch (error) {
      if (error instanceof SFrameAuthError) return refused("auth", error);
      if (error instanceof SFrameReplayError) return refused("replay", error);
      if (error instanceof SFrameHeaderError) return refused("malformed", error);
      if (error instanceof SFrameUnknownKeyError) return refused("retired", error);
      throw error;
    }
  }
}

function newPeer(id: string, existing: boolean): Peer {
  return {
    id,
    existing,
    identity: null,
    proven: false,
    holdsOurKey: false,
    lastKid: null,
    contexts: new Map(),
    held: new Map(),
    retired: new Set(),
    retireAt: new Map(),
    newestOpened: null,
    videoWaiting: false,
  };
}

function retire(peer: Peer, kid: bigint): void {
  const suite = peer.held.get(kid);
  if (suite !== undefined) peer.contexts.get(suite)?.retireKey(kid);
  peer.held.delete(kid);
  peer.retireAt.delete(kid);
  peer.retired.add(kid);
}

function refused(refusal: FrameRefusal, error: unknown): Opened {
  return { ok: false, refusal, reason: error instanceof Error ? error.message : String(error) };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
