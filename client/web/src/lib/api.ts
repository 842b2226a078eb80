/**
 * The control plane's HTTP API as the browser uses it (docs/ARCHITECTURE.md, "Join flow").
 *
 * Responses are checked field by field: a control plane that answers something else fails here with
 * `ApiError` naming the field, not later inside WebTransport with an opaque handshake error.
 */

export class ApiError extends Error {
  override readonly name = "ApiError";

  /** `status`: the HTTP status (0 when the answer was not a refusal); `code`: the API's error code. */
  constructor(
    message: string,
    readonly status = 0,
    readonly code = "",
  ) {
    super(message);
  }
}

/** Where a signed-in person's access token is kept; the control plane makes its holder a host of the
 * meetings it creates or hosts (control/meeting_routes.py). Without one the app joins as a guest. */
export const ACCESS_TOKEN_KEY = "darktower.accessToken";

/** A join: granted at once, or waiting in the meeting's lobby with a ticket to poll. */
export type JoinOutcome = { granted: JoinGrant } | { waiting: string };

/** What `POST /v1/meetings/{id}/join` grants: where to connect, the token to present, the certificates. */
export interface JoinGrant {
  token: string;
  webtransportUrl: string;
  /** The role the grant carries: "host" may mute, remove, lock and end (older servers send none). */
  role: string;
  /** SHA-256 hashes of self-signed certificates to accept (empty with publicly trusted certificates). */
  certificateHashes: { algorithm: "sha-256"; value: Uint8Array<ArrayBuffer> }[];
}

export async function createMeeting(base = ""): Promise<string> {
  const body = await post(`${base}/v1/meetings`, {});
  return requireString(body, "meeting_id");
}

export async function joinMeeting(meetingId: string, displayName: string, base = ""): Promise<JoinOutcome> {
  const body = await post(`${base}/v1/meetings/${encodeURIComponent(meetingId)}/join`, {
    display_name: displayName,
  });
  return parseJoinOutcome(body);
}

/** Asks whether a host let the lobby ticket in: waiting, granted, or ApiError `lobby_denied`. */
export async function pollLobby(meetingId: string, ticket: string, base = ""): Promise<JoinOutcome> {
  const body = await post(`${base}/v1/meetings/${encodeURIComponent(meetingId)}/lobby/poll`, { ticket });
  return parseJoinOutcome(body);
}

export function parseJoinOutcome(body: unknown): JoinOutcome {
  if (field(body, "status") === "waiting") return { waiting: requireString(body, "ticket") };
  return { granted: parseJoinGrant(body) };
}

export function parseJoinGrant(body: unknown): JoinGrant {
  const hashes = field(body, "certificate_hashes") ?? [];
  if (!Array.isArray(hashes)) throw new ApiError("certificate_hashes is not a list");
  return {
    token: requireString(body, "token"),
    webtransportUrl: requireString(body, "webtransport_url"),
    role: optionalString(body, "role"),
    certificateHashes: hashes.map((hash: unknown) => {
      if (requireString(hash, "algorithm") !== "sha-256")
        throw new ApiError("certificate hash is not sha-256");
      return { algorithm: "sha-256", value: parseHex(requireString(hash, "value")) };
    }),
  };
}

/** Lower- or upper-case hex, optionally colon-separated (as `openssl x509 -fingerprint` prints it). */
export function parseHex(text: string): Uint8Array<ArrayBuffer> {
  const hex = text.replaceAll(":", "");
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new ApiError(`not a hex string: ${text}`);
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

async function post(url: string, json: object): Promise<unknown> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  const accessToken = "sessionStorage" in globalThis ? sessionStorage.getItem(ACCESS_TOKEN_KEY) : null;
  if (accessToken !== null && accessToken !== "") headers.authorization = `Bearer ${accessToken}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(json) });
  if (!response.ok) {
    const detail = await response.text();
    throw new ApiError(
      `POST ${url} answered ${response.status}: ${detail}`,
      response.status,
      errorCode(detail),
    );
  }
  return (await response.json()) as unknown;
}

/** The `error.code` of a refusal's JSON body (`{"error": {"code", "message"}}`), or "". */
function errorCode(detail: string): string {
  try {
    const error = field(JSON.parse(detail), "error");
    const code = typeof error === "object" && error !== null ? field(error, "code") : undefined;
    return typeof code === "string" ? code : "";
  } catch {
    return "";
  }
}

function field(body: unknown, name: string): unknown {
  if (typeof body !== "object" || body === null) throw new ApiError(`expected an object holding ${name}`);
  return (body as Record<string, unknown>)[name];
}

function optionalString(body: unknown, name: string): string {
  const value = field(body, name) ?? "";
  if (typeof value !== "string") throw new ApiError(`${name} is not a string`);
  return value;
}

function requireString(body: unknown, name: string): string {
  const value = field(body, name);
  if (typeof value !== "string" || value === "") throw new ApiError(`${name} is missing or not a string`);
  return value;
}
