/** SignalingClient driven byte for byte, with the test playing the server. */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { DelimitedReader, encodeDelimited, encodeVarint } from "../src/lib/delimited";
import {
  RequestError,
  SignalingClient,
  SignalingClosedError,
  SignalingError,
  type SignalingEvent,
} from "../src/lib/signaling";
import {
  ClientMessageSchema,
  ErrorCode,
  ServerMessageSchema,
  TrackKind,
  type ClientMessage,
} from "../src/gen/signaling_pb";

/** The server's view of one session: what the client wrote, and a way to answer. */
function connect(maxMessageBytes?: number) {
  const reader = new DelimitedReader(1 << 20);
  const sent: ClientMessage[] = [];
  const dropped: string[] = [];
  const client = new SignalingClient(
    (bytes) => {
      for (const body of reader.feed(bytes)) sent.push(fromBinary(ClientMessageSchema, body));
    },
    {
      ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
      onDropped: (error) => dropped.push(error.message),
    },
  );
  const serverBytes = (init: MessageInitShape<typeof ServerMessageSchema>) =>
    encodeDelimited(toBinary(ServerMessageSchema, create(ServerMessageSchema, init)));
  const answer = (init: MessageInitShape<typeof ServerMessageSchema>) => {
    client.receive(serverBytes(init));
  };
  return { client, sent, dropped, answer, serverBytes };
}

describe("SignalingClient", () => {
  it("sends join with a fresh request id and resolves with the JoinResponse", async () => {
    const { client, sent, answer } = connect();
    const joined = client.join("token-1");
    expect(sent).toHaveLength(1);
    expect(sent[0]?.requestId).toBe(1);
    const body = sent[0]?.body;
    expect(body?.case === "join" ? body.value.token : null).toBe("token-1");
    answer({
      requestId: 1,
      body: {
        case: "joinResponse",
        value: { participantId: "p1", meetingId: "m1", maxFramePayloadBytes: 1200 },
      },
    });
    await expect(joined).resolves.toMatchObject({ participantId: "p1", maxFramePayloadBytes: 1200 });
    expect(client.pendingCount).toBe(0);
  });

  it("matches answers to requests by id even when they arrive out of order", async () => {
    const { client, sent, answer } = connect();
    const audio = client.publish(TrackKind.AUDIO, "opus", "microphone");
    const video = client.publish(TrackKind.VIDEO, "vp8", "camera");
    expect(sent.map((message) => message.requestId)).toEqual([1, 2]);
    answer({
      requestId: 2,
      body: { case: "publishResponse", value: { track: { trackId: 8, codec: "vp8" } } },
    });
    answer({
      requestId: 1,
      body: { case: "publishResponse", value: { track: { trackId: 7, codec: "opus" } } },
    });
    await expect(video).resolves.toMatchObject({ trackId: 8 });
    await expect(audio).resolves.toMatchObject({ trackId: 7 });
  });

  it("rejects a request the server refused with a RequestError carrying the code", async () => {
    const { client, answer } = connect();
    const subscribed = client.subscribe(99);
    answer({
      requestId: 1,
      body: { case: "error", value: { code: ErrorCode.UNKNOWN_TRACK, message: "no track 99", fatal: false } },
    });
    await expect(subscribed).rejects.toEqual(new RequestError(ErrorCode.UNKNOWN_TRACK, "no track 99", false));
    await expect(subscribed).rejects.toMatchObject({ code: ErrorCode.UNKNOWN_TRACK, fatal: false });
  });

  it("rejects an answer of the wrong type with SignalingError", async () => {
    const { client, answer } = connect();
    const pong = client.ping(5n);
    answer({ requestId: 1, body: { case: "ack", value: {} } });
    await expect(pong).rejects.toThrow(SignalingError);
  });

  it("delivers server-initiated messages to listeners until they unsubscribe", () => {
    const { client, answer } = connect();
    const events: SignalingEvent[] = [];
    const unsubscribe = client.onEvent((event) => events.push(event));
    answer({ body: { case: "participantJoined", value: { participant: { participantId: "p2" } } } });
    answer({ body: { case: "keyframeRequest", value: { trackId: 8 } } });
    unsubscribe();
    answer({ body: { case: "trackUnpublished", value: { trackId: 8 } } });
    expect(events.map((event) => event.case)).toEqual(["participantJoined", "keyframeRequest"]);
  });

  it("reassembles messages split across chunks and several messages in one chunk", async () => {
    const { client, serverBytes } = connect();
    const events: SignalingEvent[] = [];
    client.onEvent((event) => events.push(event));
    const pong = client.ping(11n);
    const bytes = new Uint8Array([
      ...serverBytes({
        requestId: 1,
        body: { case: "pong", value: { clientTimeUs: 11n, serverTimeUs: 12n } },
      }),
      ...serverBytes({ body: { case: "trackPublished", value: { track: { trackId: 3 } } } }),
    ]);
    for (const byte of bytes) client.receive(Uint8Array.of(byte));
    await expect(pong).resolves.toMatchObject({ clientTimeUs: 11n, serverTimeUs: 12n });
    expect(events.map((event) => event.case)).toEqual(["trackPublished"]);
  });

  it("drops and reports an answer to a request that is not pending, then carries on", async () => {
    const { client, dropped, answer } = connect();
    answer({ requestId: 42, body: { case: "ack", value: {} } });
    expect(dropped).toEqual([expect.stringMatching(/request 42, which is not pending/)]);
    const subscribed = client.subscribe(1);
    answer({ requestId: 1, body: { case: "ack", value: {} } });
    await expect(subscribed).resolves.toBeUndefined();
  });

  it("refuses a length prefix over its limit before the body arrives", () => {
    const { client } = connect(16);
    expect(() => {
      client.receive(encodeVarint(17));
    }).toThrow(/over the limit/);
  });

  it("drops bytes that are not a ServerMessage and messages without a body, then carries on", () => {
    const { client, dropped, serverBytes } = connect();
    const events: SignalingEvent[] = [];
    client.onEvent((event) => events.push(event));
    client.receive(
      Uint8Array.from([
        ...encodeDelimited(Uint8Array.of(0xff, 0xff, 0xff)),
        ...serverBytes({}),
        ...serverBytes({ body: { case: "trackUnpublished", value: { trackId: 4 } } }),
      ]),
    );
    expect(dropped).toEqual([
      expect.stringMatching(/not a ServerMessage/),
      expect.stringMatching(/without a body/),
    ]);
    expect(events.map((event) => event.case)).toEqual(["trackUnpublished"]);
  });

  it("rejects pending and later requests once closed", async () => {
    const { client, sent } = connect();
    const pending = client.leave();
    client.close();
    await expect(pending).rejects.toThrow(SignalingClosedError);
    await expect(client.subscribe(1)).rejects.toThrow(SignalingClosedError);
    expect(sent).toHaveLength(1);
    expect(client.closed).toBe(true);
  });
});

describe("length-delimited framing", () => {
  it.each([
    [0, [0x00]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [0xffff_ffff, [0xff, 0xff, 0xff, 0xff, 0x0f]],
  ])("writes %i as the varint protobuf writes", (value, bytes) => {
    expect([...encodeVarint(value)]).toEqual(bytes);
  });

  it("refuses a length prefix longer than five bytes", () => {
    const reader = new DelimitedReader(1 << 20);
    expect(() => reader.feed(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x01))).toThrow(SignalingError);
  });

  it("holds back a partial message", () => {
    const reader = new DelimitedReader(100);
    expect(reader.feed(Uint8Array.of(3, 1, 2))).toEqual([]);
    expect(reader.buffered).toBe(3);
    expect(reader.feed(Uint8Array.of(3))).toEqual([Uint8Array.of(1, 2, 3)]);
    expect(reader.buffered).toBe(0);
  });
});
