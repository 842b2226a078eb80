/**
 * Camera and microphone publishing: MediaStreamTrack -> WebCodecs encoder -> media frames on WebTransport.
 *
 * Video goes out as one unidirectional stream per group of pictures, audio as one datagram per Opus packet
 * (docs/FRAME-FORMAT.md). The framing decisions live in `packetizer.ts`; this module only moves bytes,
 * into a `MediaSink` (WebTransport in a meeting, memory in the loopback test).
 */
import { debugCounters, recordError } from "./debug";
import { AudioPacketizer, VideoPacketizer, audioLevel } from "./packetizer";

/** A keyframe at least this often even when nobody asks, so losses heal without a round trip. */
const KEYFRAME_INTERVAL_FRAMES = 150;
/** Frames waiting in the encoder beyond which new camera frames are dropped (the encoder is behind). */
const MAX_ENCODE_QUEUE = 2;

export const VIDEO_CODEC = "vp8";
export const AUDIO_CODEC = "opus";

/** Where published frames go. */
export interface MediaSink {
  /** A new stream for one video group (a WebTransport unidirectional stream). */
  openGroup: () => Promise<WritableStreamDefaultWriter<Uint8Array>>;
  /** One audio frame, unreliably (a datagram); may drop it. */
  sendDatagram: (bytes: Uint8Array) => Promise<void>;
}

/** A sink onto a WebTransport session. */
export function webTransportSink(transport: WebTransport): MediaSink {
  const datagrams = (transport.datagrams.writable as WritableStream<Uint8Array>).getWriter();
  return {
    openGroup: async () => (await transport.createUnidirectionalStream()).getWriter(),
    sendDatagram: (bytes) => datagrams.write(bytes),
  };
}

function nowUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

export class VideoPublisher {
  private readonly packetizer: VideoPacketizer;
  private readonly encoder: VideoEncoder;
  private readonly captureTimes = new Map<number, bigint>();
  private writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private sendQueue: Promise<void> = Promise.resolve();
  private keyframeWanted = true;
  private framesSinceKey = 0;
  private configured = false;
  private stopped = false;

  constructor(
    private readonly track: MediaStreamTrack,
    private readonly sink: MediaSink,
    trackId: number,
    maxPayload: number,
  ) {
    this.packetizer = new VideoPacketizer(trackId, maxPayload);
    this.encoder = new VideoEncoder({
      output: (chunk) => {
        this.onChunk(chunk);
      },
      error: (error) => {
        recordError("video encoder", error);
      },
    });
    void this.pump();
  }

  /** The server relays a subscriber's request: the next frame starts a new group. */
  requestKeyframe(): void {
    this.keyframeWanted = true;
  }

  stop(): void {
    this.stopped = true;
    if (this.encoder.state !== "closed") this.encoder.close();
    const writer = this.writer;
    this.writer = null;
    if (writer !== null) void writer.close().catch(() => undefined);
  }

  private async pump(): Promise<void> {
    const reader = new MediaStreamTrackProcessor<VideoFrame>({ track: this.track }).readable.getReader();
    try {
      while (!this.stopped) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        try {
          this.encode(frame);
        } finally {
          frame.close();
        }
      }
    } catch (error) {
      if (!this.stopped) recordError("camera", error);
    } finally {
      reader.releaseLock();
    }
  }

  private encode(frame: VideoFrame): void {
    if (this.encoder.state === "closed" || this.encoder.encodeQueueSize > MAX_ENCODE_QUEUE) return;
    if (!this.configured) {
      this.encoder.configure({
        codec: VIDEO_CODEC,
        width: frame.displayWidth,
        height: frame.displayHeight,
        bitrate: 1_000_000,
        framerate: 30,
        latencyMode: "realtime",
      });
      this.configured = true;
    }
    const keyFrame = this.keyframeWanted || this.framesSinceKey >= KEYFRAME_INTERVAL_FRAMES;
    this.keyframeWanted = false;
    this.framesSinceKey = keyFrame ? 0 : this.framesSinceKey + 1;
    this.captureTimes.set(frame.timestamp, nowUs());
    this.encoder.encode(frame, { keyFrame });
  }

  private onChunk(chunk: EncodedVideoChunk): void {
    const captureUs = this.captureTimes.get(chunk.timestamp) ?? nowUs();
    this.captureTimes.delete(chunk.timestamp);
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const packet = this.packetizer.packetize(chunk.type === "key", captureUs, payload);
    if (packet === null) return;
    this.sendQueue = this.sendQueue
      .then(() => this.send(packet.bytes, packet.newGroup))
      .catch((error: unknown) => {
        if (!this.stopped) recordError("video send", error);
      });
  }

  private async send(bytes: Uint8Array, newGroup: boolean): Promise<void> {
    if (this.stopped) return;
    if (newGroup) {
      const previous = this.writer;
      this.writer = null;
      if (previous !== null) void previous.close().catch(() => undefined);
      this.writer = await this.sink.openGroup();
    }
    if (this.writer === null) return;
    await this.writer.write(bytes);
    debugCounters().sentVideoFrames++;
  }
}

export class AudioPublisher {
  private readonly packetizer: AudioPacketizer;
  private readonly encoder: AudioEncoder;
  private level = { levelDbov: 127, voice: false };
  private configured = false;
  private stopped = false;

  constructor(
    private readonly track: MediaStreamTrack,
    private readonly sink: MediaSink,
    trackId: number,
    maxPayload: number,
  ) {
    this.packetizer = new AudioPacketizer(trackId, maxPayload);
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        this.onChunk(chunk);
      },
      error: (error) => {
        recordError("audio encoder", error);
      },
    });
    void this.pump();
  }

  stop(): void {
    this.stopped = true;
    if (this.encoder.state !== "closed") this.encoder.close();
  }

  private async pump(): Promise<void> {
    const reader = new MediaStreamTrackProcessor<AudioData>({ track: this.track }).readable.getReader();
    try {
      while (!this.stopped) {
        const { value: data, done } = await reader.read();
        if (done) break;
        try {
          this.encode(data);
        } finally {
          data.close();
        }
      }
    } catch (error) {
      if (!this.stopped) recordError("microphone", error);
    } finally {
      reader.releaseLock();
    }
  }

  private encode(data: AudioData): void {
    if (this.encoder.state === "closed") return;
    if (!this.configured) {
      this.encoder.configure({
        codec: AUDIO_CODEC,
        sampleRate: data.sampleRate,
        numberOfChannels: data.numberOfChannels,
        bitrate: 32_000,
      });
      this.configured = true;
    }
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    this.level = audioLevel(samples);
    this.encoder.encode(data);
  }

  private onChunk(chunk: EncodedAudioChunk): void {
    if (this.stopped) return;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const bytes = this.packetizer.packetize(nowUs(), payload, this.level.levelDbov, this.level.voice);
    // Datagrams are unreliable by design: a full send queue drops the packet, as the network would.
    this.sink.sendDatagram(bytes).then(
      () => {
        debugCounters().sentAudioFrames++;
      },
      (error: unknown) => {
        if (!this.stopped) recordError("audio send", error);
      },
    );
  }
}
