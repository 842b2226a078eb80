/** Session endings, host-action refusals, the rate-limit resend, and the host action on the wire. */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { ApiError, parseJoinOutcome } from "../src/lib/api";
import { DelimitedReader, encodeDelimited } from "../src/lib/delimited";
import {
  RATE_LIMIT_PAUSE_MS,
  RATE_LIMIT_RESENDS,
  endingMessage,
  endingOfCloseCode,
  endingOfFailure,
  hostActionRefusal,
  isHostRole,
  withRateLimitRetry,
} from "../src/lib/hostcontrol";
import { RequestError, SignalingClient } from "../src/lib/signaling";
import {
  ClientMessageSchema,
  ErrorCode,
  HostAction_Kind,
  ServerMessageSchema,
  type ClientMessage,
} from "../src/gen/signaling_pb";

describe("session endings", () => {
  it("names removal, the end, a lock and a refused plaintext join, and nothing else", () => {
    expect(endingMessage(ErrorCode.REMOVED)).toBe("A host removed you from the meeting");
    expect(endingMessage(ErrorCode.ENDED)).toBe("The meeting has ended");
    expect(endingMessage(ErrorCode.MEETING_LOCKED)).toMatch(/locked/);
    expect(endingMessage(ErrorCode.E2EE_REQUIRED)).toMatch(/end-to-end/);
    for (const code of [ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED, ErrorCode.PERMISSION_DENIED]) {
      expect(endingMessage(code)).toBeNull();
    }
  });

  it("reads endings from the server's close code", () => {
    expect(endingOfCloseCode(ErrorCode.ENDED)).toBe("The meeting has ended");
    expect(endingOfCloseCode(ErrorCode.INTERNAL)).toBeNull();
    expect(endingOfCloseCode(undefined)).toBeNull();
  });

  it("reads endings from refused joins on signaling and on the control plane", () => {
    expect(endingOfFailure(new RequestError(ErrorCode.REMOVED, "gone", true))).toMatch(/removed/);
    expect(endingOfFailure(new ApiError("410", 410, "meeting_ended"))).toBe("The meeting has ended");
    expect(endingOfFailure(new ApiError("403", 403, "lobby_denied"))).toBe("A host did not let you in");
    expect(endingOfFailure(new ApiError("503", 503, "worker_unavailable"))).toBeNull();
    expect(endingOfFailure(new RequestError(ErrorCode.INTERNAL, "oops", true))).toBeNull();
    expect(endingOfFailure(new Error("network"))).toBeNull();
  });
});

describe("host actions", () => {
  it("knows the host role from the grant", () => {
    expect(isHostRole("host")).toBe(true);
    expect(isHostRole("participant")).toBe(false);
    expect(isHostRole("")).toBe(false);
  });

  it("says briefly why an action was refused", () => {
    const denied = new RequestError(ErrorCode.PERMISSION_DENIED, "not a host", false);
    expect(hostActionRefusal(HostAction_Kind.REMOVE, denied)).toBe("Only a host may remove someone");
    const gone = new RequestError(ErrorCode.UNKNOWN_PARTICIPANT, "no such", false);
    expect(hostActionRefusal(HostAction_Kind.MUTE, gone)).toBe("Could not mute someone: they already left");
    expect(hostActionRefusal(HostAction_Kind.END, new Error("not connected"))).toBe(
      "Could not end the meeting: not connected",
    );
  });

  it("sends a HostAction naming the target and settles on the server's Ack", async () => {
    const reader = new DelimitedReader(1 << 20);
    const sent: ClientMessage[] = [];
    const client = new SignalingClient((bytes) => {
      for (const body of reader.feed(bytes)) sent.push(fromBinary(ClientMessageSchema, body));
    });
    const done = client.hostAction(HostAction_Kind.MUTE, "bob");
    const [message] = sent;
    expect(message?.body.case).toBe("hostAction");
    expect(message?.body.value).toMatchObject({ kind: HostAction_Kind.MUTE, participantId: "bob" });
    const ack = create(ServerMessageSchema, {
      requestId: message?.requestId ?? 0,
      body: { case: "ack", value: {} },
    });
    client.receive(encodeDelimited(toBinary(ServerMessageSchema, ack)));
    await expect(done).resolves.toBeUndefined();
  });
});

describe("withRateLimitRetry", () => {
  const limited = () => new RequestError(ErrorCode.RATE_LIMITED, "slow down", false);

  it("sends again after each RATE_LIMITED refusal, pausing in between, until it goes through", async () => {
    const pauses: number[] = [];
    let calls = 0;
    const result = await withRateLimitRetry(
      () => (++calls < 4 ? Promise.reject(limited()) : Promise.resolve("sent")),
      (ms) => {
        pauses.push(ms);
        return Promise.resolve();
      },
    );
    expect(result).toBe("sent");
    expect(calls).toBe(4);
    expect(pauses).toEqual([RATE_LIMIT_PAUSE_MS, RATE_LIMIT_PAUSE_MS, RATE_LIMIT_PAUSE_MS]);
  });

  it("gives up after the last resend, and never resends other refusals", async () => {
    let calls = 0;
    const never = () => {
      calls++;
      return Promise.reject(limited());
    };
    await expect(withRateLimitRetry(never, () => Promise.resolve())).rejects.toThrow(/RATE_LIMITED/);
    expect(calls).toBe(RATE_LIMIT_RESENDS + 1);
    calls = 0;
    const refused = () => {
      calls++;
      return Promise.reject(new RequestError(ErrorCode.UNKNOWN_PARTICIPANT, "who", false));
    };
    await expect(withRateLimitRetry(refused, () => Promise.resolve())).rejects.toThrow(/UNKNOWN_PARTICIPANT/);
    expect(calls).toBe(1);
  });
});

describe("parseJoinOutcome", () => {
  it("tells a lobby ticket from a grant and keeps the grant's role", () => {
    expect(parseJoinOutcome({ status: "waiting", request_id: "r", ticket: "tk" })).toEqual({ waiting: "tk" });
    const outcome = parseJoinOutcome({ token: "t", webtransport_url: "https://x/", role: "host" });
    expect("granted" in outcome && outcome.granted.role).toBe("host");
    expect(() => parseJoinOutcome({ status: "waiting" })).toThrow(ApiError);
  });
});
