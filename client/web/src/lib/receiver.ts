/**
 * Subscribed tracks: media frames -> decoders -> a renderer (video) or the playout (audio).
 *
 * Video: the decoder starts at a keyframe. When it fails (its error callback, or `decode` throwing) it is
 * rebuilt, every frame up to the next keyframe is dropped, and the owner is asked once per
 * `KEYFRAME_RETRY_MS` (`onKeyframeNeeded`) to request a keyframe through signaling; the tile recovers with
 * that keyframe. A decoder that falls behind (`MAX_DECODE_QUEUE`) is treated the same way, so frames never
 * queue without bound. Audio goes through the jitter buffer first, so packets reach the decoder in order at
 * a steady pace, driven by the owner's `tick`.
 *
 * The bot's synthetic media (synthetic.ts) is not a codec bitstream: it bypasses the decoders, a video
 * frame becomes a test card and an audio packet plays as silence, and both count as received media.
 *
 * Decoders come from a factory, so the WebCodecs ones run in the browser and tests pass their own.
 */
import type { FrameHeader } from "./frame";
import { JitterBuffer } from "./jitter";
import { isSynthetic } from "./synthetic";

/** What a decoder is given: the fields of an EncodedVideoChunk or EncodedAudioChunk. */
export interface ChunkInit {
  type: "key" | "delta";
  timestamp: number;
  data: Uint8Array;
}

/** The part of VideoDecoder / AudioDecoder a receiver uses. */
export interface DecoderPort {
  decode: (chunk: ChunkInit) => void;
  close: () => void;
  readonly decodeQueueSize: number;
}

export interface DecoderCallbacks<Output> {
  output: (output: Output) => void;
  error: (error: unknown) => void;
}

export type DecoderFactory<Output> = (codec: string, callbacks: DecoderCallbacks<Output>) => DecoderPort;

/** A decoded picture: the part of VideoFrame a receiver reads. */
export interface Picture {
  readonly displayWidth: number;
  readonly displayHeight: number;
  /** The capture time in µs since the Unix epoch, carried through the decoder. */
  readonly timestamp: number;
  close: () => void;
}

/** A decoded block of audio: the part of AudioData a receiver reads. */
export interface Sound {
  readonly timestamp: number;
  close: () => void;
}

/** Where a video receiver's pictures go (a tile's canvas). */
export interface VideoRenderer<P extends Picture> {
  draw: (picture: P) => void;
  /** A synthetic frame: draw a test card for frame `objectSeq` of group `group`. */
  drawTestCard: (group: number, objectSeq: number) => void;
}

/** Frames beyond this many waiting in the decoder mean it cannot keep up: skip to the next keyframe. */
export const MAX_DECODE_QUEUE = 8;
/** At most one keyframe request per this many milliseconds while waiting for one. */
export const KEYFRAME_RETRY_MS = 1000;

export interface ReceiverEvents {
  /** A frame was decoded (or a synthetic one rendered); `captureUs` is the publisher's capture time. */
  decoded: (width: number, height: number, captureUs: number, synthetic: boolean) => void;
  /** The decoder failed or fell behind and the receiver now waits for a keyframe. */
  stalled: (reason: string) => void;
}

export class VideoReceiver<P extends Picture> {
  private decoder: DecoderPort | null = null;
  private waitingForKeyframe = true;
  private lastKeyframeRequestMs = -Infinity;
  private renderer: VideoRenderer<P> | null = null;
  private closed = false;

  constructor(
    private readonly codec: string,
    private readonly publisherId: string,
    private readonly makeDecoder: DecoderFactory<P>,
    private readonly events: ReceiverEvents,
    private readonly onKeyframeNeeded: () => void,
    private readonly clockMs: () => number = () => performance.now(),
  ) {}

  /** Where pictures are drawn; null while no tile shows this track. */
  attach(renderer: VideoRenderer<P> | null): void {
    this.renderer = renderer;
  }

  push(header: FrameHeader, payload: Uint8Array): void {
    if (this.closed) return;
    if (isSynthetic(header, payload, "video", this.publisherId)) {
      this.renderer?.drawTestCard(header.group, header.objectSeq);
      this.events.decoded(0, 0, Number(header.captureUs), true);
      return;
    }
    if (this.waitingForKeyframe && !header.keyframe) {
      this.askForKeyframe();
      return;
    }
    const decoder = this.decoder ?? this.newDecoder();
    if (decoder === null) return;
    if (decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      this.stall("the decoder fell behind");
      return;
    }
    this.waitingForKeyframe = false;
    try {
      decoder.decode({
        type: header.keyframe ? "key" : "delta",
        timestamp: Number(header.captureUs),
        data: payload,
      });
    } catch (error) {
      this.fail(decoder, error);
    }
  }

  /**
   * A frame of this track never reached the receiver (an end-to-end refusal): later frames would miss
   * their reference, so every frame up to the next keyframe is dropped; the next one asks for it.
   */
  lost(): void {
    this.waitingForKeyframe = true;
  }

  close(): void {
    this.closed = true;
    this.decoder?.close();
    this.decoder = null;
  }

  /** A fresh decoder (now `this.decoder`), or null when none can be made (the receiver stalls). */
  private newDecoder(): DecoderPort | null {
    try {
      const decoder: DecoderPort = this.makeDecoder(this.codec, {
        output: (picture) => {
          this.draw(picture);
        },
        error: (error) => {
          this.fail(decoder, error);
        },
      });
      this.decoder = decoder;
      return decoder;
    } catch (error) {
      this.stall(`no decoder for ${this.codec}: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    }
  }

  private fail(decoder: DecoderPort, error: unknown): void {
    if (decoder !== this.decoder) return;
    this.decoder = null;
    try {
      decoder.close();
    } catch {
      // Already closed by its own error: nothing left to release.
    }
    this.stall(`decoder error: ${error instanceof Error ? error.message : String(error)}`);
  }

  private stall(reason: string): void {
    this.waitingForKeyframe = true;
    this.events.stalled(reason);
    this.lastKeyframeRequestMs = -Infinity;
    this.askForKeyframe();
  }

  private askForKeyframe(): void {
    const now = this.clockMs();
    if (now - this.lastKeyframeRequestMs < KEYFRAME_RETRY_MS) return;
    this.lastKeyframeRequestMs = now;
    this.onKeyframeNeeded();
  }

  private draw(picture: P): void {
    try {
      if (this.closed) return;
      this.events.decoded(picture.displayWidth, picture.displayHeight, picture.timestamp, false);
      this.renderer?.draw(picture);
    } finally {
      picture.close();
    }
  }
}

/** Where decoded audio goes (the AudioWorklet playout). */
export interface AudioOutput<S extends Sound> {
  play: (sound: S) => void;
}

export class AudioReceiver<S extends Sound> {
  private readonly jitter = new JitterBuffer();
  private decoder: DecoderPort | null = null;
  private closed = false;

  constructor(
    private readonly codec: string,
    private readonly publisherId: string,
    private readonly makeDecoder: DecoderFactory<S>,
    private readonly events: ReceiverEvents,
    private readonly output: AudioOutput<S>,
  ) {}

  push(header: FrameHeader, payload: Uint8Array, nowMs: number): void {
    if (this.closed) return;
    if (isSynthetic(header, payload, "audio", this.publisherId)) {
      this.events.decoded(0, 0, Number(header.captureUs), true);
      return;
    }
    this.jitter.push(header.objectSeq, header.captureUs, payload.slice(), nowMs);
  }

  /** Decodes what the jitter buffer has due by `nowMs`; the owner calls it every few milliseconds. */
  tick(nowMs: number): void {
    if (this.closed) return;
    for (const playout of this.jitter.pop(nowMs)) {
      if (playout.kind !== "frame") continue;
      const decoder = this.decoder ?? this.newDecoder();
      if (decoder === null) return;
      try {
        decoder.decode({ type: "key", timestamp: Number(playout.captureUs), data: playout.payload });
      } catch (error) {
        this.fail(decoder, error);
      }
    }
  }

  close(): void {
    this.closed = true;
    this.decoder?.close();
    this.decoder = null;
  }

  /** A fresh decoder (now `this.decoder`), or null when none can be made (the track stays silent). */
  private newDecoder(): DecoderPort | null {
    try {
      const decoder: DecoderPort = this.makeDecoder(this.codec, {
        output: (sound) => {
          try {
            if (this.closed) return;
            this.events.decoded(0, 0, sound.timestamp, false);
            this.output.play(sound);
          } finally {
            sound.close();
          }
        },
        error: (error) => {
          this.fail(decoder, error);
        },
      });
      this.decoder = decoder;
      return decoder;
    } catch (error) {
      this.closed = true;
      this.events.stalled(
        `no decoder for ${this.codec}: ${error instanceof Error ? error.message : String(error)}`,
      );
      return null;
    }
  }

  private fail(decoder: DecoderPort, error: unknown): void {
    if (decoder !== this.decoder) return;
    this.decoder = null;
    try {
      decoder.close();
    } catch {
      // Already closed by its own error: nothing left to release.
    }
    this.events.stalled(`audio decoder error: ${error instanceof Error ? error.message : String(error)}`);
  }
}
