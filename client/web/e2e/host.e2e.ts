/**
 * Host controls end to end: a signed-in person (access token in the page's session storage) creates a
 * meeting in the browser app and so joins it as its host; a guest joins from the link. The guest sees the
 * Host badge; the host mutes the guest from the participant list (the guest shows who muted it and its mute
 * button turns muted), then removes it: the guest shows the final message and stays out (its session is
 * over, not reconnecting), and the host's count drops back to one.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { debug, joinAs, launchChromium, newPerson } from "./browser";
import { startServer, type RunningServer } from "./server";

let server: RunningServer | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  server = await startServer();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

/** Registers an account and signs it in through the control API; returns its access token. */
async function signIn(httpUrl: string, email: string): Promise<string> {
  const password = "a long enough password 42";
  const post = async (path: string, body: object): Promise<unknown> => {
    const response = await fetch(`${httpUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
    return response.json();
  };
  await post("/v1/users", { email, password, display_name: "Hana" });
  const tokens = (await post("/v1/auth/login", { email, password })) as { access_token: string };
  return tokens.access_token;
}

function row(page: Page, participantId: string) {
  return page.locator(`[data-testid="participant"][data-participant="${participantId}"]`);
}

describe("host controls in real Chromium", () => {
  it("lets the meeting's host mute and then remove a guest, who stays out", async () => {
    if (server === undefined || browser === undefined)
      throw new Error("the server or Chromium did not start");
    const token = await signIn(server.httpUrl, "hana@example.com");
    const host = await newPerson(browser, "Hana");
    const guest = await newPerson(browser, "Gus");
    await host.addInitScript((accessToken) => {
      sessionStorage.setItem("darktower.accessToken", accessToken);
    }, token);

    await host.goto(`${server.httpUrl}/`);
    await host.getByTestId("create-meeting").click();
    await host.waitForURL(/#\/m\/[\w-]+$/);
    const meetingUrl = host.url();
    await joinAs(host, meetingUrl, "Hana");
    const guestId = await joinAs(guest, meetingUrl, "Gus");

    await guest.getByTestId("toggle-people").click();
    await guest.getByTestId("host-badge").waitFor();
    await expect(guest.getByTestId("host-mute").count()).resolves.toBe(0);

    await host.getByTestId("toggle-people").click();
    await row(host, guestId).getByTestId("host-mute").click();
    await guest.getByTestId("muted-by").waitFor();
    await expect(guest.getByTestId("muted-by").textContent()).resolves.toContain("Muted by Hana");
    await expect(guest.getByTestId("toggle-mic").getAttribute("aria-pressed")).resolves.toBe("true");

    await row(host, guestId).getByTestId("host-remove").click();
    await guest.getByTestId("meeting-ended").waitFor();
    await expect(guest.getByTestId("meeting-ended").textContent()).resolves.toContain(
      "A host removed you from the meeting",
    );
    await expect(guest.getByTestId("meeting").getAttribute("data-state")).resolves.toBe("failed");
    const after = await debug(guest);
    expect(after.state).toBe("failed");
    expect(after.reconnects).toBe(0);
    await host.waitForFunction(
      () => document.querySelector('[data-testid="participant-count"]')?.textContent === "1",
    );
  });
});
