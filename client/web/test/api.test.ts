import { describe, expect, it } from "vitest";

import { ApiError, parseHex, parseJoinGrant } from "../src/lib/api";
import { meetingHash, parseRoute } from "../src/lib/route";

describe("parseJoinGrant", () => {
  it("turns the certificate hashes into bytes for serverCertificateHashes", () => {
    const grant = parseJoinGrant({
      token: "t",
      webtransport_url: "https://127.0.0.1:4433/meetings/m1",
      certificate_hashes: [{ algorithm: "sha-256", value: "00ff7A" }],
    });
    expect(grant.webtransportUrl).toBe("https://127.0.0.1:4433/meetings/m1");
    expect(grant.certificateHashes).toEqual([{ algorithm: "sha-256", value: Uint8Array.of(0, 255, 122) }]);
  });

  it("accepts a grant without certificate hashes (publicly trusted certificates)", () => {
    expect(parseJoinGrant({ token: "t", webtransport_url: "https://x/" }).certificateHashes).toEqual([]);
  });

  it.each([
    [{ webtransport_url: "https://x/" }, /token/],
    [{ token: "t" }, /webtransport_url/],
    [{ token: "t", webtransport_url: "u", certificate_hashes: {} }, /not a list/],
    [
      { token: "t", webtransport_url: "u", certificate_hashes: [{ algorithm: "sha-1", value: "00" }] },
      /sha-256/,
    ],
    [
      { token: "t", webtransport_url: "u", certificate_hashes: [{ algorithm: "sha-256", value: "0g" }] },
      /hex/,
    ],
    [null, /object/],
  ])("refuses %j with ApiError", (body, message) => {
    expect(() => parseJoinGrant(body)).toThrow(ApiError);
    expect(() => parseJoinGrant(body)).toThrow(message);
  });

  it("reads colon-separated fingerprints", () => {
    expect(parseHex("AB:cd:01")).toEqual(Uint8Array.of(0xab, 0xcd, 0x01));
  });
});

describe("routes", () => {
  it.each([
    ["", { page: "landing" }],
    ["#/", { page: "landing" }],
    ["#/m/abc_DEF-1", { page: "meeting", meetingId: "abc_DEF-1" }],
    ["#/m/abc/", { page: "meeting", meetingId: "abc" }],
    ["#/m/", { page: "landing" }],
    ["#/m/a b", { page: "landing" }],
  ])("reads %j", (hash, route) => {
    expect(parseRoute(hash)).toEqual(route);
  });

  it("round-trips a meeting id through its link", () => {
    expect(parseRoute(meetingHash("xyz"))).toEqual({ page: "meeting", meetingId: "xyz" });
  });
});
