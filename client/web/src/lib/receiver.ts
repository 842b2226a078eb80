/**
 * Subscribed tracks: media frames -> WebCodecs decoders -> a canvas (video) or the speakers (audio).
 *
 * A video decoder starts at a keyframe; if it fails it is rebuilt and waits for the next keyframe, and
 * the owner is asked (`onKeyframeNeeded`) to request one through signaling. Audio goes through the jitter
 * buffer first, so packets reach the decoder in order at a steady pace.
 */
import { debugCounters, recordError } from "./debug";
import type { FrameHeader } from "./frame";
import { JitterBuffer } from "./jitter";

export class VideoReceiver {
  private decoder: VideoDecoder;
  private waitingForKeyframe = true;
  private canvas: HTMLCanvasElement | null = null;

  constructor(
    private readonly codec: string,
    private readonly participantId: string,
    private readonly onKeyframeNeeded: () => void,
  ) {
    this.decoder = this.makeDecoder();
  }

  /** Where decoded frames are drawn; null while no tile shows this track. */
  attach(canvas: HTMLCanvasElement | null): void {
    this.canvas = canvas;
  }

  push(header: FrameHeader, payload: Uint8Array): void {
    if (this.decoder.state === "closed") this.decoder = this.makeDecoder();
    if (this.waitingForKeyframe && !header.keyframe) return;
    this.waitingForKeyframe = false;
    this.decoder.decode(
      new EncodedVideoChunk({
        type: header.keyframe ? "key" : "delta",
        timestamp: Number(header.captureUs),
        data: payload,
      }),
    );
  }

  close(): void {
    if (this.decoder.state !== "closed") this.decoder.close();
  }

  private makeDecoder(): VideoDecoder {
    const decoder = new VideoDecoder({
      output: (frame) => {
        this.draw(frame);
      },
      error: (error) => {
        recordError(`video decoder (${this.participantId})`, error);
        this.waitingForKeyframe = true;
        this.onKeyframeNeeded();
      },
    });
    decoder.configure({ codec: this.codec, optimizeForLatency: true });
    this.waitingForKeyframe = true;
    return decoder;
  }

  private draw(frame: VideoFrame): void {
    try {
      const counters = debugCounters().decodedVideoFrames;
      counters[this.participantId] = (counters[this.participantId] ?? 0) + 1;
      const canvas = this.canvas;
      if (canvas === null) return;
      if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
        canvas.width = frame.displayWidth;
        canvas.height = frame.displayHeight;
      }
      canvas.getContext("2d")?.drawImage(frame, 0, 0);
    } finally {
      frame.close();
    }
  }
}

/** Playout tick: how often the jitter buffer is asked for due packets. */
const AUDIO_TICK_MS = 10;

export class AudioReceiver {
  private readonly jitter = new JitterBuffer();
  private readonly decoder: AudioDecoder;
  private readonly timer: ReturnType<typeof setInterval>;
  private playAt = 0;

  constructor(
    codec: string,
    private readonly audioContext: AudioContext,
  ) {
    this.decoder = new AudioDecoder({
      output: (data) => {
        this.play(data);
      },
      error: (error) => {
        recordError("audio decoder", error);
      },
    });
    this.decoder.configure({ codec, sampleRate: 48_000, numberOfChannels: 1 });
    this.timer = setInterval(() => {
      this.tick();
    }, AUDIO_TICK_MS);
  }

  push(header: FrameHeader, payload: Uint8Array): void {
    this.jitter.push(header.objectSeq, header.captureUs, payload.slice(), performance.now());
  }

  close(): void {
    clearInterval(this.timer);
    if (this.decoder.state !== "closed") this.decoder.close();
  }

  private tick(): void {
    if (this.decoder.state !== "configured") return;
    for (const playout of this.jitter.pop(performance.now())) {
      if (playout.kind !== "frame") continue;
      this.decoder.decode(
        new EncodedAudioChunk({ type: "key", timestamp: Number(playout.captureUs), data: playout.payload }),
      );
    }
  }

  private play(data: AudioData): void {
    try {
      debugCounters().decodedAudioFrames++;
      const buffer = this.audioContext.createBuffer(1, data.numberOfFrames, data.sampleRate);
      const samples = new Float32Array(data.numberOfFrames);
      data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
      buffer.copyToChannel(samples, 0);
      const source = this.audioContext.createBufferSource();
      source.buffer = buffer;
      source.connect(this.audioContext.destination);
      this.playAt = Math.max(this.playAt, this.audioContext.currentTime);
      source.start(this.playAt);
      this.playAt += buffer.duration;
    } finally {
      data.close();
    }
  }
}
