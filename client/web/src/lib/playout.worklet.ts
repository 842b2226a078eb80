/**
 * The AudioWorklet that plays received audio: decoded samples arrive from the main thread by message, per
 * remote participant, and `PlayoutMixer` turns them into the output, one 128-sample render quantum at a
 * time. Messages: `{ source, samples }` queues mono samples, `{ source, remove: true }` drops a source.
 */
import { PlayoutMixer } from "./mixer";

declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}

declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessor): void;

export type PlayoutMessage = { source: string; samples: Float32Array } | { source: string; remove: true };

class PlayoutProcessor extends AudioWorkletProcessor {
  private readonly mixer = new PlayoutMixer();

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<PlayoutMessage>) => {
      const message = event.data;
      if ("samples" in message) this.mixer.push(message.source, message.samples);
      else this.mixer.remove(message.source);
    };
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const channels = outputs[0] ?? [];
    const first = channels[0];
    if (first === undefined) return true;
    this.mixer.render(first);
    for (const channel of channels.slice(1)) channel.set(first);
    return true;
  }
}

registerProcessor("darktower-playout", PlayoutProcessor);
