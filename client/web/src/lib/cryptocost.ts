/**
 * What SFrame costs in this browser, for `ops/web.sh bench` (bench/media.bench.ts): seals, then opens, a
 * batch of equal frames one after another through `SFrameContext` with the app's default suite, as a
 * publisher's send queue and a receiver's per-track queue do. Exposed as `window.__darktowerBench`; the
 * benchmark reads the page's CPU time around each call.
 */
import { DEFAULT_SUITE } from "./keymessages";
import { SFrameContext } from "./sframe";

export interface DarkTowerBench {
  /** Seals `frames` frames of `size` bytes (kept for `openSealed`); resolves µs per frame, wall clock. */
  sealFrames: (size: number, frames: number) => Promise<number>;
  /** Opens what the last `sealFrames` sealed; resolves µs per frame, wall clock. */
  openSealed: () => Promise<number>;
}

declare global {
  interface Window {
    __darktowerBench?: DarkTowerBench;
  }
}

const KID = 1n;
const METADATA = new Uint8Array(24);

export function installBenchHooks(): void {
  const baseKey = crypto.getRandomValues(new Uint8Array(32));
  let sealed: Uint8Array[] = [];
  let sender: SFrameContext | null = null;
  window.__darktowerBench = {
    sealFrames: async (size, frames) => {
      sender = new SFrameContext(DEFAULT_SUITE);
      await sender.addEncryptionKey(KID, baseKey);
      const payload = new Uint8Array(size).fill(0x5a);
      sealed = [];
      const started = performance.now();
      for (let i = 0; i < frames; i++) sealed.push(await sender.encrypt(KID, payload, METADATA));
      return ((performance.now() - started) * 1000) / frames;
    },
    openSealed: async () => {
      const receiver = new SFrameContext(DEFAULT_SUITE, { replayWindow: sealed.length + 1 });
      await receiver.addDecryptionKey(KID, baseKey);
      const started = performance.now();
      for (const frame of sealed) await receiver.decrypt(frame, METADATA);
      return ((performance.now() - started) * 1000) / Math.max(1, sealed.length);
    },
  };
}
