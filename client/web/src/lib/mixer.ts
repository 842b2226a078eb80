/**
 * The playout end of received audio: decoded samples per remote participant in, one mixed output block at a
 * time out. Runs inside the AudioWorklet (playout.worklet.ts) and is free of I/O, so tests drive it.
 *
 * Each source queues mono samples. A source starts (and restarts after running dry) only once `prefill`
 * samples are waiting, so a short gap in arrivals does not become a click per block. A source whose queue
 * grows past `maxQueued` (the decoder delivered a burst, or the clock drifted) drops its oldest samples down
 * to `prefill`, keeping latency bounded. The mix is the clamped sum of every playing source.
 */

export interface MixerConfig {
  prefill: number;
  maxQueued: number;
}

/** At 48 kHz: 20 ms before a source starts, at most 200 ms queued. */
export const DEFAULT_MIXER: MixerConfig = { prefill: 960, maxQueued: 9600 };

interface Source {
  chunks: Float32Array[];
  /** Samples of `chunks[0]` already played. */
  offset: number;
  queued: number;
  playing: boolean;
}

export interface MixerStats {
  underruns: number;
  droppedSamples: number;
}

export class PlayoutMixer {
  private readonly sources = new Map<string, Source>();
  readonly stats: MixerStats = { underruns: 0, droppedSamples: 0 };

  constructor(private readonly config: MixerConfig = DEFAULT_MIXER) {}

  push(sourceId: string, samples: Float32Array): void {
    let source = this.sources.get(sourceId);
    if (source === undefined) {
      source = { chunks: [], offset: 0, queued: 0, playing: false };
      this.sources.set(sourceId, source);
    }
    source.chunks.push(samples);
    source.queued += samples.length;
    if (source.queued > this.config.maxQueued) this.skip(source, source.queued - this.config.prefill);
  }

  remove(sourceId: string): void {
    this.sources.delete(sourceId);
  }

  queued(sourceId: string): number {
    return this.sources.get(sourceId)?.queued ?? 0;
  }

  /** Fills `out` with the next block of the mix (silence where nothing plays). */
  render(out: Float32Array): void {
    out.fill(0);
    for (const source of this.sources.values()) {
      if (!source.playing) {
        if (source.queued < this.config.prefill) continue;
        source.playing = true;
      }
      let written = 0;
      while (written < out.length && source.chunks.length > 0) {
        const chunk = source.chunks[0];
        if (chunk === undefined) break;
        const take = Math.min(out.length - written, chunk.length - source.offset);
        for (let i = 0; i < take; i++)
          out[written + i] = (out[written + i] ?? 0) + (chunk[source.offset + i] ?? 0);
        written += take;
        source.offset += take;
        source.queued -= take;
        if (source.offset === chunk.length) {
          source.chunks.shift();
          source.offset = 0;
        }
      }
      if (written < out.length) {
        source.playing = false;
        this.stats.underruns++;
      }
    }
    for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i] ?? 0));
  }

  private skip(source: Source, count: number): void {
    let left = count;
    while (left > 0 && source.chunks.length > 0) {
      const chunk = source.chunks[0];
      if (chunk === undefined) break;
      const take = Math.min(left, chunk.length - source.offset);
      source.offset += take;
      left -= take;
      if (source.offset === chunk.length) {
        source.chunks.shift();
        source.offset = 0;
      }
    }
    const skipped = count - left;
    source.queued -= skipped;
    this.stats.droppedSamples += skipped;
  }
}
