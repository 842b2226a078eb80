/**
 * Everyone else's tracks on this page: a receiver per subscribed track (decoders, jitter buffer), the
 * renderer a tile attached to it, and its live figures for the stats overlay.
 *
 * The session opens and closes tracks as the roster changes and pushes frames whose payload is ready to
 * decode (already opened, for an encrypting publisher). Receivers outlive connections: other publishers'
 * track ids do not change when this page reconnects. Decoded frames are counted on the debug hooks by
 * publisher.
 */
import { countFor, debugCounters, recordLatency } from "./debug";
import type { FrameHeader } from "./frame";
import { TrackMeter, type TrackFigures } from "./meter";
import type { AudioPlayout } from "./playout";
import { AudioReceiver, VideoReceiver, type ReceiverEvents, type VideoRenderer } from "./receiver";
import { webCodecsAudioDecoder, webCodecsVideoDecoder } from "./webcodecs";
import { TrackKind, type Track } from "../gen/signaling_pb";

export class TrackReceivers {
  private readonly videoReceivers = new Map<number, VideoReceiver<VideoFrame>>();
  private readonly audioReceivers = new Map<number, AudioReceiver<AudioData>>();
  private readonly renderers = new Map<number, VideoRenderer<VideoFrame>>();
  private readonly meters = new Map<number, TrackMeter>();

  constructor(
    private readonly playout: AudioPlayout,
    /** Asks the track's publisher for a keyframe (through signaling). */
    private readonly requestKeyframe: (trackId: number) => void,
  ) {}

  /** Shows track `trackId`'s video through `renderer` (null: nowhere). */
  attachVideo(trackId: number, renderer: VideoRenderer<VideoFrame> | null): void {
    if (renderer === null) this.renderers.delete(trackId);
    else this.renderers.set(trackId, renderer);
    this.videoReceivers.get(trackId)?.attach(renderer);
  }

  figures(trackId: number): TrackFigures | null {
    return this.meters.get(trackId)?.figures(Date.now()) ?? null;
  }

  /** Drives the audio jitter buffers. */
  tick(nowMs: number): void {
    for (const receiver of this.audioReceivers.values()) receiver.tick(nowMs);
  }

  open(track: Track): void {
    const { trackId, participantId } = track;
    const meter = new TrackMeter();
    this.meters.set(trackId, meter);
    const counters = debugCounters();
    if (track.kind === TrackKind.VIDEO) {
      const events: ReceiverEvents = {
        decoded: (width, height, captureUs, synthetic) => {
          const now = Date.now();
          meter.decoded(width, height, captureUs / 1000, now);
          countFor(counters.decodedVideoFrames, participantId);
          if (synthetic) countFor(counters.syntheticFrames, participantId);
          else recordLatency(participantId, now - captureUs / 1000);
        },
        stalled: (reason) => {
          counters.decoderStalls++;
          console.warn(`video of ${participantId}: ${reason}; waiting for a keyframe`);
        },
      };
      const receiver = new VideoReceiver(track.codec, participantId, webCodecsVideoDecoder, events, () => {
        counters.keyframeRequests++;
        this.requestKeyframe(trackId);
      });
      receiver.attach(this.renderers.get(trackId) ?? null);
      this.videoReceivers.set(trackId, receiver);
    } else if (track.kind === TrackKind.AUDIO) {
      const events: ReceiverEvents = {
        decoded: (_width, _height, _captureUs, synthetic) => {
          countFor(counters.decodedAudioFrames, participantId);
          if (synthetic) countFor(counters.syntheticFrames, participantId);
        },
        stalled: (reason) => {
          console.warn(`audio of ${participantId}: ${reason}`);
        },
      };
      const output = {
        play: (data: AudioData) => {
          this.playout.play(participantId, data);
        },
      };
      this.audioReceivers.set(
        trackId,
        new AudioReceiver(track.codec, participantId, webCodecsAudioDecoder, events, output),
      );
    }
  }

  close(track: Track): void {
    this.videoReceivers.get(track.trackId)?.close();
    this.videoReceivers.delete(track.trackId);
    this.audioReceivers.get(track.trackId)?.close();
    this.audioReceivers.delete(track.trackId);
    this.meters.delete(track.trackId);
    if (track.kind === TrackKind.AUDIO) this.playout.remove(track.participantId);
  }

  closeAll(): void {
    for (const receiver of [...this.videoReceivers.values(), ...this.audioReceivers.values()]) {
      receiver.close();
    }
    this.videoReceivers.clear();
    this.audioReceivers.clear();
  }

  /** A frame arrived (counted in the figures before it is opened or refused). */
  arrived(trackId: number, bytes: number): void {
    this.meters.get(trackId)?.received(bytes, Date.now());
  }

  audio(header: FrameHeader, payload: Uint8Array, nowMs: number): void {
    this.audioReceivers.get(header.trackId)?.push(header, payload, nowMs);
  }

  video(header: FrameHeader, payload: Uint8Array): void {
    this.videoReceivers.get(header.trackId)?.push(header, payload);
  }

  /** A video frame of `trackId` was refused: its receiver waits for the next keyframe. */
  lost(trackId: number): void {
    this.videoReceivers.get(trackId)?.lost();
  }
}
