/**
 * Received audio to the speakers: one AudioContext at 48 kHz (Opus's rate, so nothing resamples) with the
 * playout AudioWorklet (playout.worklet.ts) mixing every remote participant. Decoded AudioData is copied
 * to mono samples here and handed to the worklet; the worklet's mixer keeps the buffer small and bounded.
 */
import workletUrl from "./playout.worklet.ts?worker&url";
import type { PlayoutMessage } from "./playout.worklet";

export class AudioPlayout {
  private constructor(
    private readonly context: AudioContext,
    private readonly node: AudioWorkletNode,
  ) {}

  static async create(): Promise<AudioPlayout> {
    const context = new AudioContext({ sampleRate: 48_000, latencyHint: "interactive" });
    await context.audioWorklet.addModule(workletUrl);
    const node = new AudioWorkletNode(context, "darktower-playout", {
      numberOfInputs: 0,
      outputChannelCount: [1],
    });
    node.connect(context.destination);
    return new AudioPlayout(context, node);
  }

  /** Queues `data` (decoded audio of `source`) for playout; the caller still closes `data`. */
  play(source: string, data: AudioData): void {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    this.post({ source, samples }, [samples.buffer]);
  }

  remove(source: string): void {
    this.post({ source, remove: true });
  }

  /** Starts the context if the browser's autoplay policy held it (call from a user gesture). */
  resume(): void {
    if (this.context.state === "suspended") void this.context.resume();
  }

  /** Plays through the output device `deviceId` ("" = the default), where the browser can choose. */
  async setOutput(deviceId: string): Promise<void> {
    const context = this.context as AudioContext & { setSinkId?: (id: string) => Promise<void> };
    await context.setSinkId?.(deviceId);
  }

  close(): void {
    this.node.disconnect();
    void this.context.close();
  }

  private post(message: PlayoutMessage, transfer: Transferable[] = []): void {
    this.node.port.postMessage(message, transfer);
  }
}
