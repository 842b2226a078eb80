/**
 * Headless Chromium for the end-to-end tests: Debian's /usr/bin/chromium (never a downloaded browser) with a
 * fake camera and microphone, and helpers that drive the app and read `window.__darktower`.
 */
import { chromium, type Browser, type Page } from "playwright-core";

import type { DarkTowerDebug } from "../src/lib/debug";

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--use-fake-device-for-media-stream=fps=30",
      "--use-fake-ui-for-media-stream",
      "--auto-select-desktop-capture-source=Entire screen",
      "--autoplay-policy=no-user-gesture-required",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
}

/** A page in its own browser context (its own storage, like another person's browser). */
export async function newPerson(browser: Browser, name: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      console.log(`[${name} ${message.type()}] ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => {
    console.log(`[${name} pageerror] ${error.message}`);
  });
  return page;
}

/** Opens the meeting link, enters the name on the pre-join screen and joins; resolves once joined. */
export async function joinAs(page: Page, meetingUrl: string, name: string): Promise<string> {
  await page.goto(meetingUrl);
  await page.getByTestId("display-name").fill(name);
  await page.getByTestId("join").click();
  await page.waitForFunction(() => window.__darktower?.state === "joined", undefined, { timeout: 20_000 });
  return (await debug(page)).participantId ?? "";
}

export async function debug(page: Page): Promise<DarkTowerDebug> {
  const counters = await page.evaluate(() => window.__darktower);
  if (counters === undefined) throw new Error("the page has no window.__darktower");
  return counters;
}

/** Participant ids the page knows under `name`. */
export function idsNamed(counters: DarkTowerDebug, name: string): string[] {
  return Object.entries(counters.names)
    .filter(([, known]) => known === name)
    .map(([id]) => id);
}

export interface MediaWanted {
  /** Display name of the publisher. */
  from: string;
  video: number;
  audio: number;
}

/**
 * Waits until `page` has decoded at least `video` video and `audio` audio frames from each publisher named
 * in `wanted`, counted from `since` (a previous snapshot), summed over every participant id with that name.
 */
export async function waitForMedia(
  page: Page,
  who: string,
  wanted: MediaWanted[],
  since: DarkTowerDebug | null = null,
  timeout = 30_000,
): Promise<DarkTowerDebug> {
  const before = since ?? null;
  try {
    await page.waitForFunction(
      ({ wanted, before }) => {
        const counters = window.__darktower;
        if (counters === undefined) return false;
        const total = (
          counts: Record<string, number>,
          name: string,
          base: Record<string, number> | undefined,
        ) =>
          Object.entries(counters.names)
            .filter(([, known]) => known === name)
            .reduce((sum, [id]) => sum + (counts[id] ?? 0) - (base?.[id] ?? 0), 0);
        return wanted.every(
          (want) =>
            total(counters.decodedVideoFrames, want.from, before?.decodedVideoFrames) >= want.video &&
            total(counters.decodedAudioFrames, want.from, before?.decodedAudioFrames) >= want.audio,
        );
      },
      { wanted, before },
      { timeout, polling: 100 },
    );
  } catch (error) {
    throw new Error(
      `${who} did not decode ${JSON.stringify(wanted)} within ${timeout} ms: ${JSON.stringify({ ...(await debug(page)), latencyMs: "…" })}`,
      { cause: error },
    );
  }
  return debug(page);
}
