/**
 * Publishing: MediaStreamTrack -> WebCodecs encoder -> media frames on WebTransport.
 *
 * Video goes out as one unidirectional stream per group of pictures, audio as one datagram per Opus packet
 * (docs/FRAME-FORMAT.md); the framing decisions live in `packetizer.ts`. A publisher outlives media sessions:
 * `bind` points it at a session's sink with the track id the server assigned there (after a reconnect the id
 * is new), `unbind` parks it, and it encodes only while bound. `replaceTrack` switches the device under it
 * without a new publication.
 *
 * End-to-end encryption: `bind` takes a `FrameSealer` that turns each whole plaintext frame into the frame
 * to send (SFrame ciphertext payload, the same header) or null when no key can seal it yet; frames are
 * sealed in order on the send queue, and a video frame that cannot be sealed abandons its group.
 *
 * Back-pressure never queues without bound: a camera frame that arrives while the encoder still holds
 * `MAX_ENCODE_QUEUE` frames is dropped; when more than `MAX_PENDING_WRITES` video frames wait for the network
 * the current group is abandoned (its stream ended) and sending resumes at the next keyframe, which is
 * requested at once; an audio packet the datagram queue has no room for is dropped, as the network would.
 */
import { debugCounters, recordError } from "./debug";
import { AudioPacketizer, VideoPacketizer, audioLevel } from "./packetizer";

/** A keyframe at least this often even when nobody asks, so losses heal without a round trip. */
const KEYFRAME_INTERVAL_FRAMES = 150;
/** Frames waiting in the encoder beyond which new camera frames are dropped (the encoder is behind). */
const MAX_ENCODE_QUEUE = 2;
/** Video frames handed to the stream but not yet written beyond which the group is abandoned. */
const MAX_PENDING_WRITES = 20;

export const AUDIO_CODEC = "opus";

/** Where published frames go. */
export interface MediaSink {
  /** A new stream for one video group (a WebTransport unidirectional stream). */
  openGroup: () => Promise<WritableStreamDefaultWriter<Uint8Array>>;
  /** One audio frame, unreliably (a datagram); false when it was dropped for lack of room. */
  sendDatagram: (bytes: Uint8Array) => boolean;
}

/** Seals one whole frame for sending; null: it cannot be sent (no key yet), drop it. */
export type FrameSealer = (frame: Uint8Array) => Promise<Uint8Array | null>;

/** Sends frames as they are (a participant that does not encrypt). */
export const PLAINTEXT: FrameSealer = (frame) => Promise.resolve(frame);

/** Audio datagrams handed to the transport and not yet sent beyond which new ones are dropped. */
const MAX_PENDING_DATAGRAMS = 16;

/** A sink onto a WebTransport session. */
export function webTransportSink(transport: WebTransport): MediaSink {
  const datagrams = (transport.datagrams.writable as WritableStream<Uint8Array>).getWriter();
  let pending = 0;
  return {
    openGroup: async () => (await transport.createUnidirectionalStream()).getWriter(),
    sendDatagram: (bytes) => {
      if (pending >= MAX_PENDING_DATAGRAMS) return false;
      pending++;
      datagrams
        .write(bytes)
        .catch(() => undefined)
        .finally(() => {
          pending--;
        });
      return true;
    },
  };
}

/** Wall-clock microseconds: capture times compare across machines' clocks (frame format `capture_us`). */
export function nowUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

/** Bitrate for a picture size: about 3 bits per pixel per second, within 300 kbit/s..3 Mbit/s. */
export function videoBitrate(width: number, height: number): number {
  return Math.min(3_000_000, Math.max(300_000, width * height * 3));
}

interface Binding {
  sink: MediaSink;
  packetizer: VideoPacketizer;
  seal: FrameSealer;
}

export class VideoPublisher {
  private readonly encoder: VideoEncoder;
  private readonly captureTimes = new Map<number, bigint>();
  private binding: Binding | null = null;
  private writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private sendQueue: Promise<void> = Promise.resolve();
  private pendingWrites = 0;
  /** Set when a group was abandoned: chunks are dropped until the next keyframe. */
  private skipToKeyframe = false;
  private keyframeWanted = true;
  private corruptKeyframe = false;
  private tamperFrame = false;
  private framesSinceKey = 0;
  private size = { width: 0, height: 0 };
  private reader: ReadableStreamDefaultReader<VideoFrame> | null = null;
  private stopped = false;

  constructor(
    private track: MediaStreamTrack,
    private readonly codec: string,
  ) {
    this.encoder = new VideoEncoder({
      output: (chunk) => {
        this.onChunk(chunk);
      },
      error: (error) => {
        recordError("video encoder", error);
      },
    });
    void this.pump(track);
  }

  get mediaTrack(): MediaStreamTrack {
    return this.track;
  }

  /** Starts sending into `sink` as track `trackId` (a new group, from a keyframe), sealed by `seal`. */
  bind(sink: MediaSink, trackId: number, maxPayload: number, seal: FrameSealer = PLAINTEXT): void {
    this.endGroup();
    this.binding = { sink, packetizer: new VideoPacketizer(trackId, maxPayload), seal };
    this.skipToKeyframe = false;
    this.keyframeWanted = true;
  }

  /** Stops sending (the session is gone); encoding pauses until the next `bind`. */
  unbind(): void {
    this.binding = null;
    this.endGroup();
  }

  /** The server relays a subscriber's request: the next frame starts a new group. */
  requestKeyframe(): void {
    this.keyframeWanted = true;
  }

  /** Test hook (see `DarkTowerHooks`): the next keyframe goes out with a scrambled start. */
  corruptNextKeyframe(): void {
    this.corruptKeyframe = true;
    this.keyframeWanted = true;
  }

  /** Test hook (see `DarkTowerHooks`): the next frame goes out with its last byte (SFrame tag) flipped. */
  tamperNextFrame(): void {
    this.tamperFrame = true;
  }

  /** Publishes `track` instead of the current one (another camera); the next frame is a keyframe. */
  replaceTrack(track: MediaStreamTrack): void {
    this.track = track;
    this.keyframeWanted = true;
    const previous = this.reader;
    this.reader = null;
    void previous?.cancel().catch(() => undefined);
    void this.pump(track);
  }

  stop(): void {
    this.stopped = true;
    this.unbind();
    void this.reader?.cancel().catch(() => undefined);
    if (this.encoder.state !== "closed") this.encoder.close();
  }

  private async pump(track: MediaStreamTrack): Promise<void> {
    const reader = new MediaStreamTrackProcessor<VideoFrame>({
      track,
      maxBufferSize: 1,
    }).readable.getReader();
    this.reader = reader;
    try {
      while (!this.stopped && this.reader === reader) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        try {
          this.encode(frame);
        } finally {
          frame.close();
        }
      }
    } catch (error) {
      if (!this.stopped && this.reader === reader) recordError("camera", error);
    } finally {
      reader.releaseLock();
    }
  }

  private encode(frame: VideoFrame): void {
    if (this.binding === null || this.encoder.state === "closed") return;
    if (this.encoder.encodeQueueSize > MAX_ENCODE_QUEUE) {
      debugCounters().droppedCameraFrames++;
      return;
    }
    const { displayWidth: width, displayHeight: height } = frame;
    if (width !== this.size.width || height !== this.size.height) {
      this.encoder.configure({
        codec: this.codec,
        width,
        height,
        bitrate: videoBitrate(width, height),
        framerate: 30,
        latencyMode: "realtime",
      });
      this.size = { width, height };
      this.keyframeWanted = true;
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
    const binding = this.binding;
    if (binding === null || this.stopped) return;
    const keyframe = chunk.type === "key";
    if (this.skipToKeyframe && !keyframe) return;
    this.skipToKeyframe = false;
    if (this.pendingWrites >= MAX_PENDING_WRITES) {
      this.abandonGroup();
      return;
    }
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    if (keyframe && this.corruptKeyframe) {
      this.corruptKeyframe = false;
      payload.fill(0xa5, 0, Math.min(payload.length, 64));
    }
    const packet = binding.packetizer.packetize(keyframe, captureUs, payload);
    if (packet === null) return;
    this.pendingWrites++;
    this.sendQueue = this.sendQueue
      .then(async () => {
        const sealed = await binding.seal(packet.bytes);
        if (sealed === null) {
          if (this.binding === binding && !this.skipToKeyframe) this.abandonGroup();
          return;
        }
        if (this.tamperFrame) {
          this.tamperFrame = false;
          const last = sealed.length - 1;
          sealed[last] = (sealed[last] ?? 0) ^ 0x01;
        }
        await this.send(binding, sealed, packet.newGroup);
      })
      .catch((error: unknown) => {
        if (!this.stopped && this.binding === binding) recordError("video send", error);
      })
      .finally(() => {
        this.pendingWrites--;
      });
  }

  private abandonGroup(): void {
    debugCounters().abandonedGroups++;
    this.skipToKeyframe = true;
    this.keyframeWanted = true;
    this.endGroup();
  }

  private endGroup(): void {
    const writer = this.writer;
    this.writer = null;
    if (writer !== null) void writer.close().catch(() => undefined);
  }

  private async send(binding: Binding, bytes: Uint8Array, newGroup: boolean): Promise<void> {
    if (this.binding !== binding) return;
    if (newGroup) {
      this.endGroup();
      this.writer = await binding.sink.openGroup();
    }
    if (this.writer === null || this.skipToKeyframe) return;
    await this.writer.write(bytes);
    debugCounters().sentVideoFrames++;
  }
}

export class AudioPublisher {
  private readonly encoder: AudioEncoder;
  private binding: { sink: MediaSink; packetizer: AudioPacketizer; seal: FrameSealer } | null = null;
  private sendQueue: Promise<void> = Promise.resolve();
  private level = { levelDbov: 127, voice: false };
  private configured = "";
  private reader: ReadableStreamDefaultReader<AudioData> | null = null;
  private stopped = false;

  constructor(
    private track: MediaStreamTrack,
    private readonly onLevel: (levelDbov: number, voice: boolean) => void = () => undefined,
  ) {
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        this.onChunk(chunk);
      },
      error: (error) => {
        recordError("audio encoder", error);
      },
    });
    void this.pump(track);
  }

  get mediaTrack(): MediaStreamTrack {
    return this.track;
  }

  bind(sink: MediaSink, trackId: number, maxPayload: number, seal: FrameSealer = PLAINTEXT): void {
    this.binding = { sink, packetizer: new AudioPacketizer(trackId, maxPayload), seal };
  }

  unbind(): void {
    this.binding = null;
  }

  /** Publishes `track` instead of the current one (another microphone). */
  replaceTrack(track: MediaStreamTrack): void {
    this.track = track;
    const previous = this.reader;
    this.reader = null;
    void previous?.cancel().catch(() => undefined);
    void this.pump(track);
  }

  stop(): void {
    this.stopped = true;
    this.binding = null;
    void this.reader?.cancel().catch(() => undefined);
    if (this.encoder.state !== "closed") this.encoder.close();
  }

  private async pump(track: MediaStreamTrack): Promise<void> {
    const reader = new MediaStreamTrackProcessor<AudioData>({ track }).readable.getReader();
    this.reader = reader;
    try {
      while (!this.stopped && this.reader === reader) {
        const { value: data, done } = await reader.read();
        if (done) break;
        try {
          this.encode(data);
        } finally {
          data.close();
        }
      }
    } catch (error) {
      if (!this.stopped && this.reader === reader) recordError("microphone", error);
    } finally {
      reader.releaseLock();
    }
  }

  private encode(data: AudioData): void {
    if (this.encoder.state === "closed") return;
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    this.level = audioLevel(samples);
    this.onLevel(this.level.levelDbov, this.level.voice);
    if (this.binding === null) return;
    const format = `${data.sampleRate}/${data.numberOfChannels}`;
    if (this.configured !== format) {
      this.encoder.configure({
        codec: AUDIO_CODEC,
        sampleRate: data.sampleRate,
        numberOfChannels: data.numberOfChannels,
        bitrate: 32_000,
      });
      this.configured = format;
    }
    this.encoder.encode(data);
  }

  private onChunk(chunk: EncodedAudioChunk): void {
    const binding = this.binding;
    if (binding === null || this.stopped) return;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const bytes = binding.packetizer.packetize(nowUs(), payload, this.level.levelDbov, this.level.voice);
    this.sendQueue = this.sendQueue
      .then(async () => {
        const sealed = await binding.seal(bytes);
        if (sealed !== null && this.binding === binding && binding.sink.sendDatagram(sealed)) {
          debugCounters().sentAudioFrames++;
        } else {
          debugCounters().droppedAudioPackets++;
        }
      })
      .catch((error: unknown) => {
        if (!this.stopped && this.binding === binding) recordError("audio send", error);
      });
  }
}
