/**
 * One WebTransport session with the media server and everything on it: the signaling stream, audio
 * datagrams in, video groups in (one unidirectional stream per group), and the sink publishers write to.
 *
 * A connection lives until the transport closes, for whatever reason (leave, server error, lost network);
 * then it reports `closed` exactly once, with whether joining again may help, and the session above decides
 * what to do. Malformed media from the server is dropped and logged; so is a bad signaling message inside
 * intact framing. Broken signaling framing ends the connection (the stream cannot be resynchronised), and
 * the session reconnects.
 */
import type { JoinGrant } from "./api";
import { describe, recordGarbage } from "./debug";
import { decodeFrame, FrameError, FrameReader, HEADER_SIZE, type FrameHeader } from "./frame";
import { webTransportSink, type MediaSink } from "./publisher";
import { endingMessage, endingOfCloseCode } from "./hostcontrol";
import { RequestError, SignalingClient, SignalingError, type SignalingEvent } from "./signaling";
import {
  ErrorCode,
  type HostAction_Kind,
  type JoinResponse,
  type Track,
  type TrackKind,
} from "../gen/signaling_pb";

export interface ConnectionHandlers {
  /** A server-initiated signaling message. */
  event: (event: SignalingEvent) => void;
  /** One audio frame: its header, its payload and the header's bytes (SFrame metadata is their start). */
  audio: (header: FrameHeader, payload: Uint8Array, headerBytes: Uint8Array) => void;
  video: (header: FrameHeader, payload: Uint8Array, headerBytes: Uint8Array) => void;
  /** The connection is over; `retry` is false when the server said joining again would not help. */
  closed: (reason: string, retry: boolean) => void;
}

/** Errors after which joining again would only fail the same way or fight another session. */
function isFinal(code: ErrorCode): boolean {
  return FINAL_ERRORS.has(code) || endingMessage(code) !== null;
}

/** Besides the endings of `hostcontrol.ts`: errors after which joining again cannot help. */
const FINAL_ERRORS = new Set([
  ErrorCode.REPLACED,
  ErrorCode.MEETING_FULL,
  ErrorCode.FORBIDDEN,
  ErrorCode.WRONG_MEETING,
]);
const CONNECT_TIMEOUT_MS = 10_000;
const LEAVE_TIMEOUT_MS = 2_000;
/** Keeps an otherwise idle session (camera off, muted, alone) from timing out. */
const PING_INTERVAL_MS = 10_000;

export class Connection {
  readonly sink: MediaSink;
  private readonly signaling: SignalingClient;
  private readonly pinger: ReturnType<typeof setInterval>;
  private maxPayload = 0;
  private done = false;
  private retry = true;
  /** What the server's session-ending error said, for people (`endingMessage`). */
  private ending: string | null = null;

  private constructor(
    private readonly transport: WebTransport,
    stream: WebTransportBidirectionalStream,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.sink = webTransportSink(transport);
    const writer = stream.writable.getWriter();
    this.signaling = new SignalingClient(
      (bytes) => {
        writer.write(bytes).catch(() => undefined);
      },
      {
        onDropped: (error) => {
          recordGarbage("signaling message", error);
        },
      },
    );
    this.signaling.onEvent((event) => {
      if (event.case === "error" && event.value.fatal && isFinal(event.value.code)) {
        this.retry = false;
        this.ending = endingMessage(event.value.code);
      }
      handlers.event(event);
    });
    this.pinger = setInterval(() => {
      this.signaling.ping(BigInt(Date.now()) * 1000n).catch(() => undefined);
    }, PING_INTERVAL_MS);
    void this.readSignaling(stream.readable as ReadableStream<Uint8Array>);
    void this.readDatagrams();
    void this.readGroups();
    transport.closed.then(
      (info) => {
        // The server's close carries its ErrorCode: an ending is final even when the Error before it
        // was not read in time.
        const ending = endingOfCloseCode(info.closeCode);
        if (ending !== null) {
          this.retry = false;
          this.ending ??= ending;
        }
        this.finish(
          info.reason === undefined || info.reason === "" ? "the server closed the session" : info.reason,
        );
      },
      (error: unknown) => {
        this.finish(`connection lost (${describe(error)})`);
      },
    );
  }

  /** Opens the WebTransport session the grant names and its signaling stream. */
  static async open(grant: JoinGrant, handlers: ConnectionHandlers): Promise<Connection> {
    const transport = new WebTransport(grant.webtransportUrl, {
      serverCertificateHashes: grant.certificateHashes.map(({ algorithm, value }) => ({ algorithm, value })),
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no answer from ${grant.webtransportUrl} within ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
    });
    try {
      await Promise.race([transport.ready, timeout]);
      const stream = await Promise.race([transport.createBidirectionalStream(), timeout]);
      return new Connection(transport, stream, handlers);
    } catch (error) {
      transport.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.done;
  }

  async join(token: string, e2ee: boolean): Promise<JoinResponse> {
    try {
      const joined = await this.signaling.join(token, e2ee);
      this.maxPayload = joined.maxFramePayloadBytes;
      return joined;
    } catch (error) {
      if (error instanceof RequestError && isFinal(error.code)) this.retry = false;
      throw error;
    }
  }

  get maxFramePayload(): number {
    return this.maxPayload;
  }

  publish(kind: TrackKind, codec: string, label: string): Promise<Track> {
    return this.signaling.publish(kind, codec, label);
  }

  unpublish(trackId: number): Promise<void> {
    return this.signaling.unpublish(trackId);
  }

  subscribe(trackId: number): Promise<void> {
    return this.signaling.subscribe(trackId);
  }

  requestKeyframe(trackId: number): Promise<void> {
    return this.signaling.requestKeyframe(trackId);
  }

  keyMessage(to: readonly string[], payload: Uint8Array): Promise<void> {
    return this.signaling.keyMessage(to, payload);
  }

  hostAction(kind: HostAction_Kind, participantId = ""): Promise<void> {
    return this.signaling.hostAction(kind, participantId);
  }

  /** Says goodbye (bounded wait for the server's answer), then closes. */
  async leave(): Promise<void> {
    if (this.done) return;
    this.retry = false;
    await Promise.race([
      this.signaling.leave().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, LEAVE_TIMEOUT_MS)),
    ]);
    this.drop("left the meeting");
  }

  /** Closes the transport without leaving: to the server this looks like a lost connection. */
  drop(reason: string): void {
    if (!this.done) {
      try {
        this.transport.close({ closeCode: 0, reason });
      } catch {
        // Closing a transport that is already failing: it reports closed on its own.
      }
    }
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.done) return;
    this.done = true;
    clearInterval(this.pinger);
    this.signaling.close();
    this.handlers.closed(this.ending ?? reason, this.retry);
  }

  private async readSignaling(readable: ReadableStream<Uint8Array>): Promise<void> {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.signaling.receive(value);
      }
      this.drop("the server ended signaling");
    } catch (error) {
      if (error instanceof SignalingError) recordGarbage("signaling stream", error);
      this.drop(`signaling failed (${describe(error)})`);
    }
  }

  private async readDatagrams(): Promise<void> {
    const reader = (this.transport.datagrams.readable as ReadableStream<Uint8Array>).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        try {
          const { header, payload } = decodeFrame(value, this.maxPayload);
          this.handlers.audio(header, payload, value.subarray(0, HEADER_SIZE));
        } catch (error) {
          recordGarbage("audio datagram", error);
        }
      }
    } catch {
      // The session closed under the reader: `finish` reports it.
    }
  }

  private async readGroups(): Promise<void> {
    const incoming = this.transport.incomingUnidirectionalStreams as ReadableStream<
      ReadableStream<Uint8Array>
    >;
    const streams = incoming.getReader();
    try {
      for (;;) {
        const { value, done } = await streams.read();
        if (done) break;
        void this.readGroup(value);
      }
    } catch {
      // The session closed under the reader: `finish` reports it.
    }
  }

  private async readGroup(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader();
    const frames = new FrameReader(this.maxPayload);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const { header, bytes } of frames.feed(value)) {
          this.handlers.video(header, bytes.subarray(HEADER_SIZE), bytes.subarray(0, HEADER_SIZE));
        }
      }
      frames.close();
    } catch (error) {
      // Anything but FrameError is the stream going away (the server resets a group a subscriber lags on).
      if (!(error instanceof FrameError)) return;
      recordGarbage("video group", error);
      await reader.cancel().catch(() => undefined);
    }
  }
}
