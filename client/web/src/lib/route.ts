/**
 * Hash routes, so the control plane serves one static index.html for every page:
 * `#/` is the landing page, `#/m/<meeting id>` a meeting.
 */

export type Route = { page: "landing" } | { page: "meeting"; meetingId: string };

const MEETING = /^#\/m\/([A-Za-z0-9_-]{1,128})\/?$/;

export function parseRoute(hash: string): Route {
  const match = MEETING.exec(hash);
  const meetingId = match?.[1];
  return meetingId === undefined ? { page: "landing" } : { page: "meeting", meetingId };
}

export function meetingHash(meetingId: string): string {
  return `#/m/${meetingId}`;
}
