/**
 * A real meeting, end to end: `darktower serve` started fresh, two headless Chromium contexts (fake camera
 * and microphone) joining through the app it serves, and one Python `darktower bot --e2ee` in the same
 * meeting; all three encrypt their media end to end and decrypt each other's.
 *
 * The steps share one meeting and run in order: everyone receives everyone (decoded-frame counters on
 * `window.__darktower`), the bot receives both browsers, the browsers' media is end-to-end encrypted and
 * both show the same safety number for their pair, mute and camera-off show on the other tiles, a
 * corrupted keyframe makes the receiver's decoder fail and recover through a keyframe request, a tampered
 * ciphertext is refused and counted (never decoded), killing a transport shows the reconnect banner, media
 * resumes and the other side keeps the same tile (the same element) for the new participant id, and
 * leaving removes the tile. A screenshot of the
 * meeting grid goes to test-artifacts/meeting-grid.png at the repository root.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startBot, type RunningBot } from "./bot";
import { debug, idsNamed, joinAs, launchChromium, newPerson, waitForMedia } from "./browser";
import { startServer, type RunningServer } from "./server";

const ARTIFACTS = resolve(dirname(fileURLToPath(import.meta.url)), "../../../test-artifacts");
const BOT_NAME = "Robo (bot)";
/** Long enough for the bot to see the browsers' media; the last steps wait for its report. */
const BOT_DURATION_S = 12;

let server: RunningServer | undefined;
let browser: Browser | undefined;
let alice: Page;
let bob: Page;
let meetingId = "";
let aliceId = "";
let bobId = "";
let bot: RunningBot | null = null;

function tile(page: Page, name: string, kind: "camera" | "screen" = "camera") {
  return page.locator(`[data-testid="tile"][data-name="${name}"][data-kind="${kind}"]`);
}

beforeAll(async () => {
  server = await startServer();
  browser = await launchChromium();
  alice = await newPerson(browser, "Alice");
  bob = await newPerson(browser, "Bob");
});

function httpUrl(): string {
  if (server === undefined) throw new Error("darktower serve did not start");
  return server.httpUrl;
}

function chromium(): Browser {
  if (browser === undefined) throw new Error("Chromium did not start");
  return browser;
}

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await bot?.report.catch(() => undefined);
});

describe("the browser app in real Chromium", () => {
  it("tells a browser without WebTransport that it cannot join", async () => {
    const page = await newPerson(chromium(), "Old browser");
    await page.addInitScript(() => {
      Reflect.deleteProperty(window, "WebTransport");
    });
    await page.goto(`${httpUrl()}/`);
    await expect(page.getByTestId("unsupported").textContent()).resolves.toContain("WebTransport");
    await page.context().close();
  });

  it("puts two browsers and a bot in one meeting, each receiving both others", async () => {
    await alice.goto(`${httpUrl()}/`);
    await alice.getByTestId("create-meeting").click();
    await alice.waitForURL(/#\/m\/[\w-]+$/);
    meetingId = new URL(alice.url()).hash.replace("#/m/", "");
    const meetingUrl = alice.url();
    await expect(alice.getByTestId("mic-meter").isVisible()).resolves.toBe(true);
    aliceId = await joinAs(alice, meetingUrl, "Alice");
    bobId = await joinAs(bob, meetingUrl, "Bob");
    bot = startBot(httpUrl(), meetingId, BOT_NAME, BOT_DURATION_S, true);

    const everyone = (others: string[]) => others.map((from) => ({ from, video: 30, audio: 25 }));
    const [aliceSees, bobSees] = await Promise.all([
      waitForMedia(alice, "Alice", everyone(["Bob", BOT_NAME])),
      waitForMedia(bob, "Bob", everyone(["Alice", BOT_NAME])),
    ]);
    // Browser to browser the media went through the real VP8 and Opus decoders; the bot's is synthetic.
    expect(aliceSees.syntheticFrames[bobId] ?? 0).toBe(0);
    expect(bobSees.syntheticFrames[aliceId] ?? 0).toBe(0);
    const botIds = idsNamed(aliceSees, BOT_NAME);
    expect(botIds).toHaveLength(1);
    expect(aliceSees.syntheticFrames[botIds[0] ?? ""]).toBeGreaterThan(0);

    for (const name of ["Bob", BOT_NAME]) {
      await expect(tile(alice, name).count()).resolves.toBe(1);
      await expect(tile(alice, name).getAttribute("data-camera-off")).resolves.toBe("false");
      await expect(tile(alice, name).getAttribute("data-secured")).resolves.toBe("true");
    }
    await alice.getByTestId("toggle-stats").click();
    await alice.waitForFunction(() => document.querySelectorAll('[data-testid="tile-stats"]').length >= 2);
    mkdirSync(ARTIFACTS, { recursive: true });
    await alice.screenshot({ path: resolve(ARTIFACTS, "meeting-grid.png") });
    await alice.getByTestId("toggle-stats").click();
  });

  it("encrypts the browsers' media end to end and shows both the same safety number", async () => {
    const [aliceSees, bobSees] = [await debug(alice), await debug(bob)];
    expect(aliceSees.sealedFrames).toBeGreaterThan(0);
    expect(bobSees.sealedFrames).toBeGreaterThan(0);
    const number = aliceSees.safetyNumbers[bobId];
    expect(number).toMatch(/^\d{5}( \d{5}){5}$/);
    expect(bobSees.safetyNumbers[aliceId]).toBe(number);
    for (const [page, other, otherId] of [
      [alice, "Bob", bobId],
      [bob, "Alice", aliceId],
    ] as const) {
      await expect(tile(page, other).getAttribute("data-secured")).resolves.toBe("true");
      await page.getByTestId("toggle-people").click();
      const row = page.locator(`[data-testid="participant"][data-participant="${otherId}"]`);
      await expect(row.getByTestId("safety-number").textContent()).resolves.toBe(number);
      await page.getByTestId("toggle-people").click();
    }
    for (const page of [alice, bob]) {
      const { refusedKeyMessages } = await debug(page);
      expect(
        Object.values(refusedKeyMessages).every((count) => count === 0),
        JSON.stringify(refusedKeyMessages),
      ).toBe(true);
    }
  });

  it("shows mute and camera-off on the other tiles, and video again once the camera is back", async () => {
    const bobOnAlice = tile(alice, "Bob");
    await bob.getByTestId("toggle-mic").click();
    await alice.waitForFunction(
      () =>
        document.querySelector('[data-testid="tile"][data-name="Bob"]')?.getAttribute("data-muted") ===
        "true",
    );
    await bob.getByTestId("toggle-camera").click();
    await alice.waitForFunction(
      () =>
        document.querySelector('[data-testid="tile"][data-name="Bob"]')?.getAttribute("data-camera-off") ===
        "true",
    );
    await expect(bobOnAlice.getByTestId("tile-camera-off").isVisible()).resolves.toBe(true);

    const before = await debug(alice);
    await bob.getByTestId("toggle-camera").click();
    await bob.getByTestId("toggle-mic").click();
    await waitForMedia(alice, "Alice", [{ from: "Bob", video: 30, audio: 25 }], before);
    await expect(bobOnAlice.getAttribute("data-muted")).resolves.toBe("false");
    await expect(bobOnAlice.getAttribute("data-camera-off")).resolves.toBe("false");
  });

  it("recovers a tile whose decoder fails: keyframe request, then video again", async () => {
    const before = await debug(bob);
    await alice.evaluate(() => {
      window.__darktowerHooks?.corruptNextKeyframe();
    });
    await bob.waitForFunction(
      (stalls) => (window.__darktower?.decoderStalls ?? 0) > stalls,
      before.decoderStalls,
      { timeout: 10_000 },
    );
    const stalled = await debug(bob);
    expect(stalled.keyframeRequests).toBeGreaterThan(before.keyframeRequests);
    await waitForMedia(bob, "Bob", [{ from: "Alice", video: 30, audio: 0 }], stalled);
  });

  it("refuses a tampered frame: counted, never decoded, and video goes on", async () => {
    const before = await debug(bob);
    await alice.evaluate(() => {
      window.__darktowerHooks?.tamperNextFrame();
    });
    await bob.waitForFunction(
      (auth) => (window.__darktower?.refusedFrames.auth ?? 0) > auth,
      before.refusedFrames.auth ?? 0,
      { timeout: 10_000 },
    );
    const refused = await debug(bob);
    expect(refused.refusedFrames.auth).toBe((before.refusedFrames.auth ?? 0) + 1);
    await waitForMedia(bob, "Bob", [{ from: "Alice", video: 30, audio: 0 }], refused);
  });

  it("shows the reconnect banner when the transport dies, media resumes, and the tile stays", async () => {
    const aliceBefore = await debug(alice);
    const bobBefore = await debug(bob);
    // Marks Alice's tile on Bob's page and records the most Alice tiles it ever shows at once.
    await bob.evaluate(() => {
      const selector = '[data-testid="tile"][data-name="Alice"][data-kind="camera"]';
      document.querySelector(selector)?.setAttribute("data-marker", "before-reconnect");
      document.body.dataset.aliceTiles = "1";
      new MutationObserver(() => {
        const shown = document.querySelectorAll(selector).length;
        if (shown > Number(document.body.dataset.aliceTiles))
          document.body.dataset.aliceTiles = String(shown);
      }).observe(document.body, { subtree: true, childList: true });
    });
    await alice.evaluate(() => {
      window.__darktowerHooks?.killTransport();
    });
    await alice.getByTestId("reconnect-banner").waitFor({ state: "visible", timeout: 5_000 });
    await alice.getByTestId("reconnect-banner").waitFor({ state: "hidden", timeout: 20_000 });
    const rejoined = await debug(alice);
    expect(rejoined.reconnects).toBe(aliceBefore.reconnects + 1);
    expect(rejoined.participantId).not.toBe(aliceId);
    await Promise.all([
      waitForMedia(alice, "Alice", [{ from: "Bob", video: 30, audio: 25 }], rejoined),
      waitForMedia(bob, "Bob", [{ from: "Alice", video: 30, audio: 25 }], bobBefore),
    ]);
    const aliceTile = tile(bob, "Alice");
    await expect(aliceTile.count()).resolves.toBe(1);
    await expect(aliceTile.getAttribute("data-marker")).resolves.toBe("before-reconnect");
    await expect(aliceTile.getAttribute("data-participant")).resolves.toBe(rejoined.participantId);
    await expect(bob.evaluate(() => document.body.dataset.aliceTiles)).resolves.toBe("1");
    // The same identity key after the reconnect: the same safety number under the new id.
    const bobAfter = await debug(bob);
    expect(bobAfter.safetyNumbers[rejoined.participantId ?? ""]).toBe(bobBefore.safetyNumbers[aliceId]);
  });

  it("shares a screen as its own tile and switches microphone and speaker mid-call", async () => {
    await bob.getByTestId("toggle-screen").click();
    const screen = tile(alice, "Bob", "screen");
    await screen.waitFor({ timeout: 10_000 });
    await alice.getByTestId("toggle-stats").click();
    await alice.waitForFunction(
      () =>
        document
          .querySelector(
            '[data-testid="tile"][data-name="Bob"][data-kind="screen"] [data-testid="tile-stats"]',
          )
          ?.textContent.includes("1280×720") === true,
      undefined,
      { timeout: 10_000 },
    );
    await alice.getByTestId("toggle-stats").click();
    await bob.getByTestId("toggle-screen").click();
    await screen.waitFor({ state: "detached", timeout: 10_000 });

    await bob.getByTestId("toggle-settings").click();
    const microphones = bob.getByTestId("settings-microphone");
    const choices = await microphones
      .locator("option")
      .evaluateAll((options) =>
        options.map((option) => (option as HTMLOptionElement).value).filter((value) => value !== ""),
      );
    expect(choices.length).toBeGreaterThan(1);
    const before = await debug(alice);
    await microphones.selectOption(choices.at(-1) ?? "");
    await bob.getByTestId("settings-speaker").selectOption({ index: 1 });
    await waitForMedia(alice, "Alice", [{ from: "Bob", video: 0, audio: 50 }], before);
    await bob.getByTestId("toggle-settings").click();
  });

  it("delivered both browsers' media to the bot, which decrypted it", async () => {
    if (bot === null) throw new Error("the bot never started");
    const report = await bot.report;
    // The bot counts a frame as received only once it decrypted it; none came as plaintext.
    expect(report.e2ee?.decrypted ?? 0).toBeGreaterThan(0);
    expect(report.e2ee?.plaintext).toBe(0);
    expect(report.e2ee?.refused_key_messages).toEqual(
      Object.fromEntries(Object.keys(report.e2ee?.refused_key_messages ?? {}).map((kind) => [kind, 0])),
    );
    for (const id of [aliceId, bobId]) {
      const received = report.received[id];
      expect(received?.audio ?? 0, `audio from ${id}`).toBeGreaterThan(0);
      expect(received?.video ?? 0, `video from ${id}`).toBeGreaterThan(0);
    }
    expect(report.sent.video).toBeGreaterThan(0);
    await alice.waitForFunction(
      (name) => document.querySelector(`[data-testid="tile"][data-name="${name}"]`) === null,
      BOT_NAME,
      { timeout: 10_000 },
    );
  });

  it("removes the tile of someone who leaves", async () => {
    await bob.getByTestId("leave").click();
    await bob.getByTestId("left").waitFor();
    await alice.waitForFunction(
      () => document.querySelector('[data-testid="tile"][data-name="Bob"]') === null,
      undefined,
      { timeout: 10_000 },
    );
    await expect(alice.getByTestId("participant-count").textContent()).resolves.toBe("1");
    for (const [name, page] of [
      ["Alice", alice],
      ["Bob", bob],
    ] as const) {
      const counters = await debug(page);
      expect(counters.errors, `${name}'s errors`).toEqual([]);
      // Rotations and the reconnect cost no frame to replay protection or garbling; the only frame that
      // failed authentication is the one tampered with on purpose (Alice's, refused by Bob).
      const { malformed = 0, replay = 0, auth = 0 } = counters.refusedFrames;
      expect({ malformed, replay, auth }, `${name}'s refused frames`).toEqual({
        malformed: 0,
        replay: 0,
        auth: name === "Bob" ? 1 : 0,
      });
    }
  });
});
