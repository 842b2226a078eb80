/**
 * The client half of the signaling protocol (proto/signaling.proto), free of I/O.
 *
 * The owner hands the constructor a `write` function for outgoing bytes and feeds every chunk read from
 * the signaling stream to `receive`. Requests get a non-zero request id and a pending promise that the
 * matching ServerMessage settles: the typed response resolves it, an `Error` rejects it with
 * `RequestError`. Server-initiated messages (request id 0) go to the event listeners. Tests drive this
 * module directly with bytes; `connection.ts` wires it to a WebTransport stream.
 *
 * Garbage from the server never stops the client: a well-framed message that does not decode, has no body
 * or answers no pending request is dropped and reported to `onDropped`. Only broken framing (a bad length
 * prefix) throws, because the stream cannot be resynchronised after it.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import {
  ClientMessageSchema,
  ErrorCode,
  ServerMessageSchema,
  type HostAction_Kind,
  type TrackKind,
  type JoinResponse,
  type Pong,
  type ServerMessage,
  type Track,
} from "../gen/signaling_pb";
import { DelimitedReader, SignalingError, encodeDelimited } from "./delimited";

export { SignalingError } from "./delimited";

/** Default for `maxMessageBytes`; the server's own limit is configured separately and may be smaller. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;

/** A request as the caller writes it: `{ case: "subscribe", value: { trackId } }`. */
export type RequestBody = Exclude<
  MessageInitShape<typeof ClientMessageSchema>["body"],
  { case: undefined } | undefined
>;
export type ResponseBody = Exclude<ServerMessage["body"], { case: undefined }>;
type ResponseValue<C extends ResponseBody["case"]> = Extract<ResponseBody, { case: C }>["value"];
/** A server-initiated message: roster and track events, keyframe requests, notices, unsolicited errors. */
export type SignalingEvent = ResponseBody;

/** The server answered a request with `Error`. */
export class RequestError extends Error {
  override readonly name = "RequestError";

  constructor(
    readonly code: ErrorCode,
    readonly serverMessage: string,
    readonly fatal: boolean,
  ) {
    super(`${(ErrorCode[code] as string | undefined) ?? String(code)}: ${serverMessage}`);
  }
}

/** The session ended while a request was pending, or a request was made after it ended. */
export class SignalingClosedError extends Error {
  override readonly name = "SignalingClosedError";
}

export interface SignalingOptions {
  /** Largest message accepted; the server's own limit is configured separately. */
  maxMessageBytes?: number;
  /** Told about every dropped message (default: a console warning). */
  onDropped?: (error: SignalingError) => void;
}

interface Pending {
  resolve: (body: ResponseBody) => void;
  reject: (error: Error) => void;
}

export class SignalingClient {
  private readonly reader: DelimitedReader;
  private readonly onDropped: (error: SignalingError) => void;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: SignalingEvent) => void>();
  private lastRequestId = 0;
  private closedBy: Error | null = null;

  constructor(
    private readonly write: (bytes: Uint8Array) => void,
    options: SignalingOptions = {},
  ) {
    this.reader = new DelimitedReader(options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
    this.onDropped =
      options.onDropped ??
      ((error) => {
        console.warn(`signaling: dropped ${error.message}`);
      });
  }

  /** Sends a request and settles when the server answers it. */
  request(body: RequestBody): Promise<ResponseBody> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    const requestId = this.nextRequestId();
    const message = create(ClientMessageSchema, { requestId, body });
    return new Promise<ResponseBody>((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.write(encodeDelimited(toBinary(ClientMessageSchema, message)));
    });
  }

  /** `e2ee`: this participant encrypts its media end to end (docs/E2EE.md); the others are told. */
  async join(token: string, e2ee = false): Promise<JoinResponse> {
    return expectCase(await this.request({ case: "join", value: { token, e2ee } }), "joinResponse");
  }

  async publish(kind: TrackKind, codec: string, label: string): Promise<Track> {
    const response = await this.request({ case: "publish", value: { kind, codec, label } });
    const { track } = expectCase(response, "publishResponse");
    if (track === undefined) throw new SignalingError("PublishResponse without a track");
    return track;
  }

  async unpublish(trackId: number): Promise<void> {
    expectCase(await this.request({ case: "unpublish", value: { trackId } }), "ack");
  }

  async subscribe(trackId: number): Promise<void> {
    expectCase(await this.request({ case: "subscribe", value: { trackId } }), "ack");
  }

  async unsubscribe(trackId: number): Promise<void> {
    expectCase(await this.request({ case: "unsubscribe", value: { trackId } }), "ack");
  }

  async requestKeyframe(trackId: number): Promise<void> {
    expectCase(await this.request({ case: "requestKeyframe", value: { trackId } }), "ack");
  }

  /** Relays an opaque end-to-end key message to `to` (everyone else when empty). */
  async keyMessage(to: readonly string[], payload: Uint8Array): Promise<void> {
    const value = { toParticipantIds: [...to], payload };
    expectCase(await this.request({ case: "keyMessage", value }), "ack");
  }

  /** Asks the server to act on the meeting as its host (MUTE and REMOVE name `participantId`). */
  async hostAction(kind: HostAction_Kind, participantId = ""): Promise<void> {
    expectCase(await this.request({ case: "hostAction", value: { kind, participantId } }), "ack");
  }

  async ping(clientTimeUs: bigint): Promise<Pong> {
    return expectCase(await this.request({ case: "ping", value: { clientTimeUs } }), "pong");
  }

  async leave(): Promise<void> {
    expectCase(await this.request({ case: "leave", value: {} }), "ack");
  }

  /** Registers an event listener; returns the function that removes it. */
  onEvent(listener: (event: SignalingEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Feeds bytes read from the signaling stream. Broken framing throws `SignalingError`; the stream cannot
   * be trusted after that, so the owner closes the session (and calls `close`). A bad message inside intact
   * framing is dropped and reported.
   */
  receive(chunk: Uint8Array): void {
    for (const bytes of this.reader.feed(chunk)) {
      try {
        this.dispatch(decodeServerMessage(bytes));
      } catch (error) {
        if (!(error instanceof SignalingError)) throw error;
        this.onDropped(error);
      }
    }
  }

  /** Ends the session: every pending and future request rejects with `reason`. Idempotent. */
  close(reason: Error = new SignalingClosedError("the signaling session is closed")): void {
    if (this.closedBy !== null) return;
    this.closedBy = reason;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const request of pending) request.reject(reason);
  }

  /** Requests sent and not yet answered. */
  get pendingCount(): number {
    return this.pending.size;
  }

  get closed(): boolean {
    return this.closedBy !== null;
  }

  private dispatch(message: ServerMessage): void {
    const { body } = message;
    if (body.case === undefined) throw new SignalingError("ServerMessage without a body");
    if (message.requestId === 0) {
      for (const listener of [...this.listeners]) listener(body);
      return;
    }
    const request = this.pending.get(message.requestId);
    if (request === undefined) {
      throw new SignalingError(`answer to request ${message.requestId}, which is not pending`);
    }
    this.pending.delete(message.requestId);
    if (body.case === "error") {
      request.reject(new RequestError(body.value.code, body.value.message, body.value.fatal));
    } else {
      request.resolve(body);
    }
  }

  private nextRequestId(): number {
    this.lastRequestId = this.lastRequestId >= 0xffff_ffff ? 1 : this.lastRequestId + 1;
    return this.lastRequestId;
  }
}

function decodeServerMessage(bytes: Uint8Array): ServerMessage {
  try {
    return fromBinary(ServerMessageSchema, bytes);
  } catch (error) {
    throw new SignalingError(`not a ServerMessage: ${String(error)}`);
  }
}

function expectCase<C extends ResponseBody["case"]>(body: ResponseBody, expected: C): ResponseValue<C> {
  if (body.case !== expected) throw new SignalingError(`expected ${expected}, got ${body.case}`);
  return body.value as ResponseValue<C>;
}
