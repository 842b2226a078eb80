/**
 * Live figures for one received track, for the stats overlay: resolution, frame rate, bitrate and
 * glass-to-glass latency (publisher's capture time to this client's decoded frame; both are wall clocks, so
 * the figure is exact on one machine and off by the clock skew across machines). Free of I/O and clocks:
 * callers pass `nowMs`, the same wall clock in milliseconds as capture times use.
 */

export interface TrackFigures {
  width: number;
  height: number;
  /** Decoded frames per second over the last window. */
  fps: number;
  /** Received media bits per second over the last window, headers included. */
  bitrate: number;
  /** Median glass-to-glass latency over the last window, or null before the first decoded frame. */
  latencyMs: number | null;
  decodedFrames: number;
}

interface Sample {
  atMs: number;
  value: number;
}

export class TrackMeter {
  private readonly bytes: Sample[] = [];
  private readonly latencies: Sample[] = [];
  private width = 0;
  private height = 0;
  private decodedFrames = 0;

  constructor(private readonly windowMs = 1000) {}

  /** A frame of `size` bytes arrived. */
  received(size: number, nowMs: number): void {
    this.bytes.push({ atMs: nowMs, value: size });
    this.trim(this.bytes, nowMs);
  }

  /** A frame came out of the decoder; `captureMs` is the publisher's capture time. */
  decoded(width: number, height: number, captureMs: number, nowMs: number): void {
    this.width = width;
    this.height = height;
    this.decodedFrames++;
    this.latencies.push({ atMs: nowMs, value: nowMs - captureMs });
    this.trim(this.latencies, nowMs);
  }

  figures(nowMs: number): TrackFigures {
    this.trim(this.bytes, nowMs);
    this.trim(this.latencies, nowMs);
    const seconds = this.windowMs / 1000;
    const sorted = this.latencies.map((sample) => sample.value).sort((a, b) => a - b);
    return {
      width: this.width,
      height: this.height,
      fps: this.latencies.length / seconds,
      bitrate: (this.bytes.reduce((sum, sample) => sum + sample.value, 0) * 8) / seconds,
      latencyMs: sorted.length === 0 ? null : (sorted[Math.floor((sorted.length - 1) / 2)] ?? null),
      decodedFrames: this.decodedFrames,
    };
  }

  private trim(samples: Sample[], nowMs: number): void {
    let drop = 0;
    while (drop < samples.length && (samples[drop]?.atMs ?? nowMs) <= nowMs - this.windowMs) drop++;
    samples.splice(0, drop);
  }
}
