/**
 * The browser's side of media: which of the features the app needs exist, which video codec to publish,
 * and WebCodecs decoders behind the receivers' `DecoderFactory`.
 */
import type { DecoderFactory } from "./receiver";

/** Codec strings as WebCodecs names them (and as they go into `PublishTrack.codec`). */
export const VIDEO_CODECS = {
  vp8: "vp8",
  vp9: "vp09.00.10.08",
  av1: "av01.0.04M.08",
} as const;

export type VideoCodecName = keyof typeof VIDEO_CODECS;

/** The browser APIs a meeting needs, by the name a person would look up. */
const REQUIRED: [string, () => boolean][] = [
  ["WebTransport", () => "WebTransport" in window],
  ["WebCodecs VideoEncoder", () => "VideoEncoder" in window],
  ["WebCodecs VideoDecoder", () => "VideoDecoder" in window],
  ["WebCodecs AudioEncoder", () => "AudioEncoder" in window],
  ["WebCodecs AudioDecoder", () => "AudioDecoder" in window],
  ["MediaStreamTrackProcessor", () => "MediaStreamTrackProcessor" in window],
  ["AudioWorklet", () => "AudioWorkletNode" in window],
  ["camera and microphone access", () => "mediaDevices" in navigator],
];

/** The required features this browser lacks (empty: it can join meetings). */
export function missingFeatures(): string[] {
  return REQUIRED.filter(([, present]) => !present()).map(([name]) => name);
}

/** Parses a `?codec=` choice; anything unknown means the default, VP8. */
export function parseCodecName(value: string | null): VideoCodecName {
  return value === "vp9" || value === "av1" ? value : "vp8";
}

/**
 * The codec to publish `width`x`height` video with: `wanted` when this browser can encode it in real time
 * (`isConfigSupported`), else VP8, which every WebCodecs browser encodes.
 */
export async function pickVideoCodec(wanted: VideoCodecName, width: number, height: number): Promise<string> {
  const codec = VIDEO_CODECS[wanted];
  if (wanted === "vp8") return codec;
  try {
    const { supported } = await VideoEncoder.isConfigSupported({
      codec,
      width,
      height,
      latencyMode: "realtime",
    });
    if (supported === true) return codec;
  } catch {
    // An invalid configuration: fall back like an unsupported one.
  }
  return VIDEO_CODECS.vp8;
}

export const webCodecsVideoDecoder: DecoderFactory<VideoFrame> = (codec, callbacks) => {
  const decoder = new VideoDecoder({ output: callbacks.output, error: callbacks.error });
  decoder.configure({ codec, optimizeForLatency: true });
  return {
    decode: (chunk) => {
      decoder.decode(new EncodedVideoChunk(chunk));
    },
    close: () => {
      if (decoder.state !== "closed") decoder.close();
    },
    get decodeQueueSize() {
      return decoder.decodeQueueSize;
    },
  };
};

export const webCodecsAudioDecoder: DecoderFactory<AudioData> = (codec, callbacks) => {
  const decoder = new AudioDecoder({ output: callbacks.output, error: callbacks.error });
  decoder.configure({ codec, sampleRate: 48_000, numberOfChannels: 1 });
  return {
    decode: (chunk) => {
      decoder.decode(new EncodedAudioChunk(chunk));
    },
    close: () => {
      if (decoder.state !== "closed") decoder.close();
    },
    get decodeQueueSize() {
      return decoder.decodeQueueSize;
    },
  };
};
