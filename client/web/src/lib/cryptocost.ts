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
  /**
   * Opens as many frames as the last `sealFrames` sealed, cycling over the last 256 of them (a fresh
   * receiving context per cycle, its key derivation included); resolves µs per frame, wall clock.
   */
  openSealed: () => Promise<number>;
}

declare global {
  interface Window {
    __darktowerBench?: DarkTowerBench;
  }
}

const KID = 1n;
const METADATA = new Uint8Array(24);
/** Sealed frames kept for `openSealed`: few, so memory churn does not bill the seal loop for them. */
const KEPT = 256;

export function installBenchHooks(): void {
  const baseKey = crypto.getRandomValues(new Uint8Array(32));
  let kept: Uint8Array[] = [];
  let count = 0;
  window.__darktowerBench = {
    sealFrames: async (size, frames) => {
      const sender = new SFrameContext(DEFAULT_SUITE);
      await sender.addEncryptionKey(KID, baseKey);
      const payload = new Uint8Array(size).fill(0x5a);
      kept = [];
      count = frames;
      const started = performance.now();
      for (let i = 0; i < frames; i++) {
        const frame = await sender.encrypt(KID, payload, METADATA);
        if (i >= frames - KEPT) kept.push(frame);
      }
      return ((performance.now() - started) * 1000) / frames;
    },
    openSealed: async () => {
      const started = performance.now();
      let opened = 0;
      while (opened < count && kept.length > 0) {
        // A fresh context per pass over the kept frames: each CTR opens once per context.
        const receiver = new SFrameContext(DEFAULT_SUITE);
        await receiver.addDecryptionKey(KID, baseKey);
        for (const frame of kept.slice(0, count - opened)) await receiver.decrypt(frame, METADATA);
        opened += Math.min(kept.length, count - opened);
      }
      return ((performance.now() - started) * 1000) / Math.max(1, count);
    },
  };
}
