/**
 * How long the browser waits before each attempt to rejoin after its media session dropped: exponential
 * back-off with jitter (the same policy as the Python client's `ReconnectPolicy`), so many browsers cut off
 * at once do not come back in lockstep.
 */

export interface BackoffPolicy {
  initialMs: number;
  maximumMs: number;
  multiplier: number;
  /** Up to this fraction of each delay is taken off at random. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 250, maximumMs: 5000, multiplier: 2, jitter: 0.5 };

/** Delay before attempt `attempt` (0 = the first); `random` returns a number in [0, 1). */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const base = Math.min(policy.maximumMs, policy.initialMs * policy.multiplier ** attempt);
  return base * (1 - policy.jitter * random());
}
