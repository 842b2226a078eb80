/**
 * MediaStreamTrackProcessor (Insertable Streams for MediaStreamTrack), which Chromium ships and
 * TypeScript's DOM library does not declare yet.
 */
interface MediaStreamTrackProcessorInit {
  track: MediaStreamTrack;
  maxBufferSize?: number;
}

declare class MediaStreamTrackProcessor<T extends VideoFrame | AudioData> {
  constructor(init: MediaStreamTrackProcessorInit);
  readonly readable: ReadableStream<T>;
}
