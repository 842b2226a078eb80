/**
 * One participant's session in a meeting: the WebTransport connection and everything on it.
 *
 * Opens the session with the grant from the control plane, runs signaling on the one bidirectional stream
 * (join, publish camera and microphone, subscribe to every other participant's tracks), sends media via
 * the publishers, and routes incoming media frames to receivers by `track_id` (the server forwards frames
 * unchanged, so the `Track` records map a track id to its publisher). The UI sees a `MeetingView`.
 */
import type { JoinGrant } from "./api";
import { debugCounters, recordError } from "./debug";
import { decodeFrame, FrameReader, HEADER_SIZE } from "./frame";
import {
  AUDIO_CODEC,
  AudioPublisher,
  VIDEO_CODEC,
  VideoPublisher,
  webTransportSink,
  type MediaSink,
} from "./publisher";
import { AudioReceiver, VideoReceiver } from "./receiver";
import { SignalingClient, type SignalingEvent } from "./signaling";
import { TrackKind, type Participant, type Track } from "../gen/signaling_pb";

export interface ParticipantView {
  participantId: string;
  displayName: string;
  hasVideo: boolean;
}

export interface MeetingView {
  participantId: string;
  /** Everyone else, in join order. */
  others: ParticipantView[];
  closedReason: string | null;
}

export class MeetingSession {
  private readonly participants = new Map<string, Participant>();
  private readonly tracks = new Map<number, Track>();
  private readonly videoReceivers = new Map<number, VideoReceiver>();
  private readonly audioReceivers = new Map<number, AudioReceiver>();
  private readonly canvases = new Map<string, HTMLCanvasElement>();
  private readonly publishers = new Map<number, VideoPublisher | AudioPublisher>();
  private readonly audioContext = new AudioContext();
  private readonly sink: MediaSink;
  private participantId = "";
  private maxPayload = 0;
  private closedReason: string | null = null;
  /** Events that arrive before the JoinResponse has been applied; null once joined. */
  private early: SignalingEvent[] | null = [];

  private constructor(
    private readonly transport: WebTransport,
    private readonly signaling: SignalingClient,
    private readonly onChange: (view: MeetingView) => void,
  ) {
    this.sink = webTransportSink(transport);
    signaling.onEvent((event) => {
      if (this.early === null) this.onEvent(event);
      else this.early.push(event);
    });
  }

  /** Connects, joins and starts publishing `media`; resolves once joined. */
  static async open(
    grant: JoinGrant,
    media: MediaStream,
    onChange: (view: MeetingView) => void,
  ): Promise<MeetingSession> {
    const counters = debugCounters();
    counters.state = "connecting";
    const transport = new WebTransport(grant.webtransportUrl, {
      serverCertificateHashes: grant.certificateHashes.map(({ algorithm, value }) => ({ algorithm, value })),
    });
    await transport.ready;
    const stream = await transport.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    const signaling = new SignalingClient((bytes) => {
      writer.write(bytes).catch((error: unknown) => {
        recordError("signaling write", error);
      });
    });
    const session = new MeetingSession(transport, signaling, onChange);
    void session.readSignaling(stream.readable as ReadableStream<Uint8Array>);
    void session.readDatagrams();
    void session.readGroups();
    void transport.closed.then(
      () => {
        session.finish("the server closed the session");
      },
      (error: unknown) => {
        session.finish(`connection lost: ${String(error)}`);
      },
    );
    await session.join(grant.token, media);
    return session;
  }

  /** Shows `participantId`'s video on `canvas` (null: nowhere). */
  attachVideo(participantId: string, canvas: HTMLCanvasElement | null): void {
    if (canvas === null) this.canvases.delete(participantId);
    else this.canvases.set(participantId, canvas);
    for (const [trackId, receiver] of this.videoReceivers) {
      if (this.tracks.get(trackId)?.participantId === participantId) receiver.attach(canvas);
    }
  }

  async leave(): Promise<void> {
    try {
      await this.signaling.leave();
    } catch (error) {
      recordError("leave", error);
    }
    this.finish("left the meeting");
    this.transport.close();
  }

  private async join(token: string, media: MediaStream): Promise<void> {
    const joined = await this.signaling.join(token);
    this.participantId = joined.participantId;
    this.maxPayload = joined.maxFramePayloadBytes;
    const counters = debugCounters();
    counters.participantId = joined.participantId;
    counters.state = "joined";
    for (const participant of joined.roster) this.participants.set(participant.participantId, participant);
    for (const track of joined.tracks) this.addTrack(track);
    const early = this.early ?? [];
    this.early = null;
    for (const event of early) this.onEvent(event);
    this.emit();
    for (const track of media.getVideoTracks())
      await this.publish(track, TrackKind.VIDEO, VIDEO_CODEC, "camera");
    for (const track of media.getAudioTracks())
      await this.publish(track, TrackKind.AUDIO, AUDIO_CODEC, "microphone");
  }

  private async publish(
    track: MediaStreamTrack,
    kind: TrackKind,
    codec: string,
    label: string,
  ): Promise<void> {
    const published = await this.signaling.publish(kind, codec, label);
    const publisher =
      kind === TrackKind.VIDEO
        ? new VideoPublisher(track, this.sink, published.trackId, this.maxPayload)
        : new AudioPublisher(track, this.sink, published.trackId, this.maxPayload);
    this.publishers.set(published.trackId, publisher);
  }

  private onEvent(event: SignalingEvent): void {
    switch (event.case) {
      case "participantJoined":
        if (event.value.participant !== undefined) {
          this.participants.set(event.value.participant.participantId, event.value.participant);
        }
        break;
      case "participantLeft":
        this.participants.delete(event.value.participantId);
        break;
      case "trackPublished":
        if (event.value.track !== undefined) this.addTrack(event.value.track);
        break;
      case "trackUnpublished":
        this.removeTrack(event.value.trackId);
        break;
      case "keyframeRequest": {
        const publisher = this.publishers.get(event.value.trackId);
        if (publisher instanceof VideoPublisher) publisher.requestKeyframe();
        break;
      }
      case "error":
        recordError("server", new Error(event.value.message));
        if (event.value.fatal) this.finish(`the server ended the session: ${event.value.message}`);
        break;
      default:
        break;
    }
    this.emit();
  }

  private addTrack(track: Track): void {
    if (track.participantId === this.participantId || this.tracks.has(track.trackId)) return;
    this.tracks.set(track.trackId, track);
    if (track.kind === TrackKind.VIDEO) {
      const receiver = new VideoReceiver(track.codec, track.participantId, () => {
        this.signaling.requestKeyframe(track.trackId).catch((error: unknown) => {
          recordError("keyframe request", error);
        });
      });
      receiver.attach(this.canvases.get(track.participantId) ?? null);
      this.videoReceivers.set(track.trackId, receiver);
    } else if (track.kind === TrackKind.AUDIO) {
      this.audioReceivers.set(track.trackId, new AudioReceiver(track.codec, this.audioContext));
    }
    this.signaling.subscribe(track.trackId).catch((error: unknown) => {
      recordError(`subscribe to track ${track.trackId}`, error);
    });
  }

  private removeTrack(trackId: number): void {
    this.tracks.delete(trackId);
    this.videoReceivers.get(trackId)?.close();
    this.videoReceivers.delete(trackId);
    this.audioReceivers.get(trackId)?.close();
    this.audioReceivers.delete(trackId);
  }

  private async readSignaling(readable: ReadableStream<Uint8Array>): Promise<void> {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.signaling.receive(value);
      }
      this.finish("the server ended signaling");
    } catch (error) {
      this.finish(`signaling failed: ${String(error)}`);
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
          this.audioReceivers.get(header.trackId)?.push(header, payload);
        } catch (error) {
          recordError("audio datagram", error);
        }
      }
    } catch (error) {
      if (this.closedReason === null) recordError("datagrams", error);
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
    } catch (error) {
      if (this.closedReason === null) recordError("incoming streams", error);
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
          this.videoReceivers.get(header.trackId)?.push(header, bytes.subarray(HEADER_SIZE));
        }
      }
      frames.close();
    } catch (error) {
      if (this.closedReason === null) recordError("video group", error);
      reader.releaseLock();
      await stream.cancel().catch(() => undefined);
    }
  }

  private finish(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    debugCounters().state = "closed";
    this.signaling.close();
    for (const publisher of this.publishers.values()) publisher.stop();
    for (const receiver of this.videoReceivers.values()) receiver.close();
    for (const receiver of this.audioReceivers.values()) receiver.close();
    void this.audioContext.close();
    this.emit();
  }

  private emit(): void {
    const videoOwners = new Set(
      [...this.tracks.values()]
        .filter((track) => track.kind === TrackKind.VIDEO)
        .map((track) => track.participantId),
    );
    this.onChange({
      participantId: this.participantId,
      others: [...this.participants.values()].map((participant) => ({
        participantId: participant.participantId,
        displayName: participant.displayName,
        hasVideo: videoOwners.has(participant.participantId),
      })),
      closedReason: this.closedReason,
    });
  }
}
