/**
 * Roles, host actions and the server's session-ending refusals as the browser shows them; free of I/O.
 *
 * The server closes a session with a fatal Error when a host removes the participant (REMOVED), the meeting
 * ends (ENDED), the meeting is locked (MEETING_LOCKED) or it requires end-to-end encryption the join did not
 * announce (E2EE_REQUIRED). Joining again cannot help after any of them, so `endingMessage` gives the final
 * sentence the app shows instead of reconnecting. `withRateLimitRetry` sends a request again while the
 * server refuses it as RATE_LIMITED (key messages), like the Python client's `_send_key_message`; the pause
 * is the caller's `sleep`, so tests run it without a clock.
 */
import { ErrorCode, HostAction_Kind } from "../gen/signaling_pb";
import { ApiError } from "./api";
import { RequestError } from "./signaling";

/** After a RATE_LIMITED refusal, the pause before sending the same request again. */
export const RATE_LIMIT_PAUSE_MS = 500;
/** How many times a rate-limited request is sent again before giving up. */
export const RATE_LIMIT_RESENDS = 10;

/** Keyed by the ErrorCode's number: WebTransport close codes carry the same numbers. */
const ENDINGS = new Map<number, string>([
  [ErrorCode.REMOVED, "A host removed you from the meeting"],
  [ErrorCode.ENDED, "The meeting has ended"],
  [ErrorCode.MEETING_LOCKED, "The meeting is locked: a host has stopped new people joining"],
  [ErrorCode.E2EE_REQUIRED, "This meeting requires end-to-end encryption, which this browser did not offer"],
]);

/** The final message for an error that ends the session for good; null when joining again may help. */
export function endingMessage(code: ErrorCode): string | null {
  return ENDINGS.get(code) ?? null;
}

/** The final message for a WebTransport close whose code (the server's ErrorCode) is an ending, or null. */
export function endingOfCloseCode(closeCode: number | undefined): string | null {
  return closeCode === undefined ? null : (ENDINGS.get(closeCode) ?? null);
}

/** The final message for a failed join or reconnect attempt (signaling or control plane), or null. */
export function endingOfFailure(error: unknown): string | null {
  if (error instanceof RequestError) return endingMessage(error.code);
  if (error instanceof ApiError) {
    if (error.code === "meeting_ended") return ENDINGS.get(ErrorCode.ENDED) ?? null;
    if (error.code === "lobby_denied") return "A host did not let you in";
  }
  return null;
}

/** Whether a grant's role (the control plane's `role`) makes its holder a host. */
export function isHostRole(role: string): boolean {
  return role === "host";
}

/** What a refused host action tells the host, in a short toast. */
export function hostActionRefusal(kind: HostAction_Kind, error: unknown): string {
  const what = HOST_ACTION_NAMES.get(kind) ?? "do that";
  if (error instanceof RequestError) {
    if (error.code === ErrorCode.PERMISSION_DENIED) return `Only a host may ${what}`;
    if (error.code === ErrorCode.UNKNOWN_PARTICIPANT) return `Could not ${what}: they already left`;
    return `Could not ${what}: ${error.serverMessage}`;
  }
  return `Could not ${what}: ${error instanceof Error ? error.message : String(error)}`;
}

const HOST_ACTION_NAMES = new Map<HostAction_Kind, string>([
  [HostAction_Kind.MUTE, "mute someone"],
  [HostAction_Kind.REMOVE, "remove someone"],
  [HostAction_Kind.LOCK, "lock the meeting"],
  [HostAction_Kind.UNLOCK, "unlock the meeting"],
  [HostAction_Kind.END, "end the meeting"],
]);

/** Runs `send`, and again after `sleep(RATE_LIMIT_PAUSE_MS)` while it is refused as RATE_LIMITED. */
export async function withRateLimitRetry<T>(
  send: () => Promise<T>,
  sleep: (ms: number) => Promise<void>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      const limited = error instanceof RequestError && error.code === ErrorCode.RATE_LIMITED;
      if (!limited || attempt >= RATE_LIMIT_RESENDS) throw error;
      await sleep(RATE_LIMIT_PAUSE_MS);
    }
  }
}
