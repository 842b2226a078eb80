/**
 * Browser media figures on loopback, printed and written to test-artifacts/web-bench.json:
 *
 * - Glass-to-glass latency, p50 and p99, per codec (VP8, VP9, AV1; `BENCH_CODECS` picks): two headless
 *   Chromium browsers (separate processes) in one meeting, each receiving the other's 640x360 camera; a
 *   sample is the time from the publisher reading the frame off the camera track (its capture timestamp) to
 *   the receiver's VideoDecoder handing it out, both on this machine's wall clock.
 * - Browser CPU per received stream: a receive-only browser (camera and microphone off) joins a meeting
 *   with 0, 1 and 2 publishers running in another browser; its CPU time over a fixed window (all its
 *   processes, from the DevTools protocol's SystemInfo.getProcessInfo) less the idle figure, per stream.
 *   A stream is one participant's video (640x360, 30 fps, VP8) plus audio (Opus).
 * - SFrame in the browser: µs per frame to seal and to open 100 B (audio), 4 KB and 25 KB (video) frames
 *   through the app's SFrameContext (AES_128_GCM_SHA256_128 on WebCrypto), one after another, in a page
 *   outside any meeting: wall clock and the page's renderer CPU time, best of 3 runs of about 1.5 s each. Then its share of a meeting page's
 *   CPU: two browsers exchanging 640x360 VP8 + Opus, the frames and bytes one page sealed and opened over a
 *   window, costed with the per-frame + per-byte model fitted to the 100 B and 25 KB figures, divided by
 *   that page's renderer CPU time (and by all its browser's processes).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { debug, joinAs, launchChromium, newPerson, waitForMedia } from "../e2e/browser";
import { startServer, type RunningServer } from "../e2e/server";

const ARTIFACTS = resolve(dirname(fileURLToPath(import.meta.url)), "../../../test-artifacts");
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 3000);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);
const CODECS = (process.env.BENCH_CODECS ?? "vp8,vp9,av1").split(",").filter((codec) => codec !== "");

let server: RunningServer | undefined;
const browsers: Browser[] = [];
const figures: Record<string, unknown> = {};

function httpUrl(): string {
  if (server === undefined) throw new Error("darktower serve did not start");
  return server.httpUrl;
}

async function browser(): Promise<Browser> {
  const launched = await launchChromium();
  browsers.push(launched);
  return launched;
}

/** A new meeting's link; `codec` chooses the video codec the app publishes with (`?codec=`). */
async function newMeeting(codec = "vp8"): Promise<string> {
  const response = await fetch(`${httpUrl()}/v1/meetings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  if (!response.ok)
    throw new Error(`creating a meeting answered ${response.status}: ${await response.text()}`);
  const { meeting_id: meetingId } = (await response.json()) as { meeting_id: string };
  return `${httpUrl()}/?codec=${codec}#/m/${meetingId}`;
}

/** Total CPU seconds of every process of `owner` (browser, renderers, GPU, network service), or of its
 * renderers only. */
async function cpuSeconds(owner: Browser, type: "all" | "renderer" = "all"): Promise<number> {
  const cdp = await owner.newBrowserCDPSession();
  const { processInfo } = (await cdp.send("SystemInfo.getProcessInfo")) as {
    processInfo: { type: string; cpuTime: number }[];
  };
  await cdp.detach();
  return processInfo
    .filter((process) => type === "all" || process.type === type)
    .reduce((sum, process) => sum + process.cpuTime, 0);
}

/** CPU use of `owner` over `ms`, in percent of one core. */
async function cpuPercent(owner: Browser, ms: number): Promise<number> {
  const before = await cpuSeconds(owner);
  const started = performance.now();
  await new Promise((done) => setTimeout(done, ms));
  const elapsed = (performance.now() - started) / 1000;
  return (((await cpuSeconds(owner)) - before) / elapsed) * 100;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function latencies(page: Page, from: string): Promise<number[]> {
  return (await page.evaluate((id) => window.__darktower?.latencyMs[id] ?? [], from)).slice();
}

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  for (const owner of browsers) await owner.close();
  await server?.stop();
  if (Object.keys(figures).length > 0) {
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(resolve(ARTIFACTS, "web-bench.json"), `${JSON.stringify(figures, null, 2)}\n`);
  }
});

describe("browser media on loopback", () => {
  it.each(CODECS)("glass-to-glass latency between two browsers, %s", async (codec) => {
    const url = await newMeeting(codec);
    const [first, second] = await Promise.all([browser(), browser()]);
    const alice = await newPerson(first, "Alice");
    const bob = await newPerson(second, "Bob");
    const aliceId = await joinAs(alice, url, "Alice");
    const bobId = await joinAs(bob, url, "Bob");
    await Promise.all([
      waitForMedia(alice, "Alice", [{ from: "Bob", video: 30, audio: 0 }]),
      waitForMedia(bob, "Bob", [{ from: "Alice", video: 30, audio: 0 }]),
    ]);
    await new Promise((done) => setTimeout(done, WARMUP_MS));
    const skip = [(await latencies(alice, bobId)).length, (await latencies(bob, aliceId)).length];
    await new Promise((done) => setTimeout(done, WINDOW_MS));
    const samples = [
      ...(await latencies(alice, bobId)).slice(skip[0]),
      ...(await latencies(bob, aliceId)).slice(skip[1]),
    ].sort((a, b) => a - b);
    const counters = [await debug(alice), await debug(bob)];
    const result = {
      codec: counters[0]?.videoCodec,
      samples: samples.length,
      p50_ms: Number(percentile(samples, 50).toFixed(1)),
      p99_ms: Number(percentile(samples, 99).toFixed(1)),
      max_ms: Number((samples.at(-1) ?? Number.NaN).toFixed(1)),
      decoder_stalls: counters.reduce((sum, c) => sum + c.decoderStalls, 0),
      dropped_camera_frames: counters.reduce((sum, c) => sum + c.droppedCameraFrames, 0),
    };
    figures[`glass_to_glass_${codec}`] = result;
    console.log(
      `glass-to-glass ${codec} (${result.codec ?? "?"}, capture -> decoded, 640x360, ${result.samples} frames): ` +
        `p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms`,
    );
    expect(samples.length).toBeGreaterThan(WINDOW_MS / 100);
    await Promise.all([first.close(), second.close()]);
    browsers.length = 0;
  });

  it("SFrame seal and open per frame, and their share of a meeting page's CPU", async () => {
    /** Each measurement runs about this long (CPU time is counted in 10 ms ticks); the best of a few. */
    const RUN_MS = Number(process.env.BENCH_SFRAME_RUN_MS ?? 1500);
    const REPEATS = Number(process.env.BENCH_SFRAME_REPEATS ?? 3);
    const owner = await browser();
    const page = await newPerson(owner, "Bench");
    await page.goto(`${httpUrl()}/`);
    await page.waitForFunction(() => window.__darktowerBench !== undefined);
    const seal = (size: number, frames: number) =>
      page.evaluate(({ s, n }) => window.__darktowerBench?.sealFrames(s, n) ?? Number.NaN, {
        s: size,
        n: frames,
      });
    const open = () => page.evaluate(() => window.__darktowerBench?.openSealed() ?? Number.NaN);
    /** Runs `step` (which resolves wall µs per frame) and reads the renderer's CPU µs per frame around it. */
    const measured = async (frames: number, step: () => Promise<number>) => {
      const before = await cpuSeconds(owner, "renderer");
      const wall = await step();
      return { wall, cpu: (((await cpuSeconds(owner, "renderer")) - before) * 1e6) / frames };
    };
    const cost: Record<
      number,
      { frames: number; seal_us: number; open_us: number; seal_cpu_us: number; open_cpu_us: number }
    > = {};
    for (const size of [100, 4000, 25_000]) {
      const estimate = await seal(size, 300);
      await open();
      const frames = Math.max(1000, Math.ceil((RUN_MS * 1000) / estimate));
      const best = { seal: Infinity, open: Infinity, sealCpu: Infinity, openCpu: Infinity };
      for (let run = 0; run < REPEATS; run++) {
        const sealed = await measured(frames, () => seal(size, frames));
        const opened = await measured(frames, open);
        best.seal = Math.min(best.seal, sealed.wall);
        best.sealCpu = Math.min(best.sealCpu, sealed.cpu);
        best.open = Math.min(best.open, opened.wall);
        best.openCpu = Math.min(best.openCpu, opened.cpu);
      }
      const figure = {
        frames,
        seal_us: Number(best.seal.toFixed(1)),
        open_us: Number(best.open.toFixed(1)),
        seal_cpu_us: Number(best.sealCpu.toFixed(1)),
        open_cpu_us: Number(best.openCpu.toFixed(1)),
      };
      cost[size] = figure;
      console.log(
        `SFrame ${size} B (AES_128_GCM_SHA256_128, WebCrypto, best of ${REPEATS} x ${frames}): seal ` +
          `${figure.seal_us} µs wall / ${figure.seal_cpu_us} µs renderer CPU, open ${figure.open_us} / ` +
          `${figure.open_cpu_us}`,
      );
    }
    await owner.close();
    browsers.length = 0;

    // CPU µs = per frame + per byte, fitted through the 100 B and 25 KB points.
    const fit = (small: number, large: number) => {
      const perByte = (large - small) / (25_000 - 100);
      return { perFrame: small - perByte * 100, perByte };
    };
    const [small, large] = [cost[100], cost[25_000]];
    if (small === undefined || large === undefined) throw new Error("SFrame cost not measured");
    const sealModel = fit(small.seal_cpu_us, large.seal_cpu_us);
    const openModel = fit(small.open_cpu_us, large.open_cpu_us);

    const url = await newMeeting();
    const [first, second] = [await browser(), await browser()];
    const alice = await newPerson(first, "Alice");
    await joinAs(alice, url, "Alice");
    await joinAs(await newPerson(second, "Bob"), url, "Bob");
    await waitForMedia(alice, "Alice", [{ from: "Bob", video: 30, audio: 25 }]);
    await new Promise((done) => setTimeout(done, WARMUP_MS));
    const start = { counters: await debug(alice), renderer: await cpuSeconds(first, "renderer") };
    const all = await cpuPercent(first, WINDOW_MS);
    const end = { counters: await debug(alice), renderer: await cpuSeconds(first, "renderer") };
    const delta = (key: "sealedFrames" | "sealedBytes" | "openedFrames" | "openedBytes") =>
      end.counters[key] - start.counters[key];
    const cryptoUs =
      delta("sealedFrames") * sealModel.perFrame +
      delta("sealedBytes") * sealModel.perByte +
      delta("openedFrames") * openModel.perFrame +
      delta("openedBytes") * openModel.perByte;
    const rendererUs = (end.renderer - start.renderer) * 1e6;
    const allUs = (all / 100) * WINDOW_MS * 1000;
    const share = {
      window_s: WINDOW_MS / 1000,
      sealed_frames_per_s: Number((delta("sealedFrames") / (WINDOW_MS / 1000)).toFixed(1)),
      opened_frames_per_s: Number((delta("openedFrames") / (WINDOW_MS / 1000)).toFixed(1)),
      sframe_cpu_ms_per_s: Number((cryptoUs / WINDOW_MS).toFixed(2)),
      renderer_cpu_percent: Number(((rendererUs / (WINDOW_MS * 1000)) * 100).toFixed(1)),
      share_of_renderer_percent: Number(((cryptoUs / rendererUs) * 100).toFixed(2)),
      share_of_browser_percent: Number(((cryptoUs / allUs) * 100).toFixed(2)),
    };
    figures.sframe = { per_frame: cost, meeting_share: share };
    console.log(
      `SFrame in a meeting page (sends 640x360 VP8 + Opus, receives the same): ` +
        `${share.sealed_frames_per_s} sealed + ${share.opened_frames_per_s} opened frames/s, ` +
        `~${share.sframe_cpu_ms_per_s} ms CPU/s = ${share.share_of_renderer_percent} % of the page's renderer ` +
        `CPU (${share.renderer_cpu_percent} % of a core), ${share.share_of_browser_percent} % of the browser's`,
    );
    expect(delta("openedFrames")).toBeGreaterThan(0);
    await Promise.all([first.close(), second.close()]);
    browsers.length = 0;
  });

  it("browser CPU per received stream", async () => {
    const url = await newMeeting();
    const receiverBrowser = await browser();
    const senderBrowser = await browser();
    const receiver = await newPerson(receiverBrowser, "Receiver");
    await receiver.goto(url);
    await receiver.getByTestId("display-name").fill("Receiver");
    await receiver.getByTestId("prejoin-toggle-camera").click();
    await receiver.getByTestId("prejoin-toggle-mic").click();
    await receiver.getByTestId("join").click();
    await receiver.waitForFunction(() => window.__darktower?.state === "joined");
    await new Promise((done) => setTimeout(done, WARMUP_MS));
    const cpu: number[] = [await cpuPercent(receiverBrowser, WINDOW_MS)];
    for (const streams of [1, 2]) {
      const name = `Sender ${streams}`;
      await joinAs(await newPerson(senderBrowser, name), url, name);
      await waitForMedia(receiver, "Receiver", [{ from: name, video: 30, audio: 25 }]);
      await new Promise((done) => setTimeout(done, WARMUP_MS));
      cpu.push(await cpuPercent(receiverBrowser, WINDOW_MS));
    }
    const [idle = 0, one = 0, two = 0] = cpu;
    const result = {
      idle_percent: Number(idle.toFixed(1)),
      one_stream_percent: Number(one.toFixed(1)),
      two_streams_percent: Number(two.toFixed(1)),
      per_stream_percent: Number(((two - idle) / 2).toFixed(1)),
    };
    figures.cpu_per_received_stream = result;
    console.log(
      `receiver CPU (% of one core, all browser processes): idle ${result.idle_percent}, ` +
        `1 stream ${result.one_stream_percent}, 2 streams ${result.two_streams_percent}; ` +
        `per received stream (640x360 VP8 30 fps + Opus) ${result.per_stream_percent}`,
    );
    expect(two).toBeGreaterThan(idle);
  });
});
