/**
 * Two people in one meeting, end to end: two headless Chromium contexts (fake camera and microphone) join
 * through the real app served by the control plane, and each must decode the other's video.
 */
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { DarkTowerDebug } from "../src/lib/debug";
import { startServer, type RunningServer } from "./server";

const FRAMES_TO_SEE = 30;

let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--use-fake-device-for-media-stream=fps=30",
      "--use-fake-ui-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
});

afterAll(async () => {
  await browser.close();
  await server.stop();
});

async function joinAs(page: Page, url: string, name: string): Promise<void> {
  await page.goto(url);
  await page.getByTestId("display-name").fill(name);
  await page.getByTestId("join").click();
}

async function waitForOthersVideo(page: Page, name: string): Promise<DarkTowerDebug> {
  try {
    await page.waitForFunction(
      (frames) => {
        const debug = window.__darktower;
        if (debug?.participantId == null) return false;
        return Object.entries(debug.decodedVideoFrames).some(
          ([participant, count]) => participant !== debug.participantId && count >= frames,
        );
      },
      FRAMES_TO_SEE,
      { timeout: 30_000 },
    );
  } catch (error) {
    const debug = await page.evaluate(() => window.__darktower);
    throw new Error(
      `${name} never decoded ${FRAMES_TO_SEE} frames of the other's video: ${JSON.stringify(debug)}`,
      {
        cause: error,
      },
    );
  }
  const debug = await page.evaluate(() => window.__darktower);
  if (debug === undefined) throw new Error(`${name} has no window.__darktower`);
  return debug;
}

describe("a two-person meeting in Chromium", () => {
  it("shows each participant the other's decoded video", async () => {
    const alice = await (await browser.newContext()).newPage();
    const bob = await (await browser.newContext()).newPage();
    for (const page of [alice, bob]) {
      page.on("console", (message) => {
        console.log(`[page] ${message.text()}`);
      });
    }

    await alice.goto(`${server.httpUrl}/`);
    await alice.getByTestId("create-meeting").click();
    await alice.waitForURL(/#\/m\/[\w-]+$/);
    const meetingUrl = alice.url();
    await joinAs(alice, meetingUrl, "Alice");
    await joinAs(bob, meetingUrl, "Bob");

    const [aliceSees, bobSees] = await Promise.all([
      waitForOthersVideo(alice, "Alice"),
      waitForOthersVideo(bob, "Bob"),
    ]);
    expect(aliceSees.decodedVideoFrames[bobSees.participantId ?? ""]).toBeGreaterThanOrEqual(FRAMES_TO_SEE);
    expect(bobSees.decodedVideoFrames[aliceSees.participantId ?? ""]).toBeGreaterThanOrEqual(FRAMES_TO_SEE);
    expect(aliceSees.errors).toEqual([]);
    expect(bobSees.errors).toEqual([]);
  });
});
