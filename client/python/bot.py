"""`darktower bot`: one synthetic participant that publishes, subscribes to everyone and reports what it saw.

The last line on stdout is always one JSON object (the report), so scripts and load tests read it with
`tail -n1`; without `--json` a summary for people precedes it. Exit status 0 means the bot joined and left
cleanly, 1 that a client error stopped it (the message goes to stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from darktower.client.api import ControlApi
from darktower.client.errors import ClientError
from darktower.client.media import MediaKind
from darktower.client.meeting import MeetingClient
from darktower.core import logging as dt_logging

_KINDS: tuple[MediaKind, ...] = ("audio", "video")


async def run_bot(
    server: str,
    meeting_id: str,
    *,
    publish: Sequence[MediaKind] = _KINDS,
    duration: float = 10.0,
    name: str | None = None,
    ca_file: str | None = None,
    e2ee: bool = False,
) -> dict[str, Any]:
    """Runs one bot for `duration` seconds after joining and returns its report (see `report`)."""
    async with ControlApi(server) as api:
        await api.ensure_meeting(meeting_id)
        client = MeetingClient(
            api,
            meeting_id,
            name or f"bot-{secrets.token_hex(3)}",
            auto_subscribe=True,
            ca_file=ca_file,
            e2ee=e2ee,
        )
        try:
            await client.join()
            for kind in publish:
                await client.publish(kind)
            await asyncio.sleep(duration)
        finally:
            await client.leave()
        return report(client)


def report(client: MeetingClient) -> dict[str, Any]:
    """The bot's JSON report: what it sent, and per remote publisher what it received and how well; with
    E2EE, `e2ee` holds the key manager's counts (frames decrypted, accepted as plaintext, refused by kind;
    key messages refused by kind; rotations), else it is null."""
    summary = client.stats.summary()
    return {
        "participant_id": client.participant_id,
        "sent": dict(client.sent),
        "received": summary["received"],
        "join_to_first_media_ms": summary["join_to_first_media_ms"],
        "latency_ms": summary["latency_ms"],
        "lost": summary["lost"],
        "out_of_order": summary["out_of_order"],
        "corrupt": summary["corrupt"],
        "unverified": summary["unverified"],
        "unattributed": summary["unattributed"],
        "reconnects": client.reconnects,
        "e2ee": None if client.keys is None else client.keys.summary(),
    }


def describe(result: dict[str, Any]) -> str:
    """The report in a few lines for people."""
    sent = result["sent"]
    lines = [f"bot {result['participant_id']}: sent {sent['audio']} audio and {sent['video']} video frames"]
    lines += [
        f"  from {pid}: {counts['audio']} audio, {counts['video']} video"
        for pid, counts in result["received"].items()
    ]
    latency = result["latency_ms"]
    lines.append(
        f"  join to first media {_ms(result['join_to_first_media_ms'])}; latency p50 {_ms(latency['p50'])}, "
        f"p99 {_ms(latency['p99'])}; lost {result['lost']}, out of order {result['out_of_order']}, "
        f"corrupt {result['corrupt']}, reconnects {result['reconnects']}"
    )
    if (e2ee := result["e2ee"]) is not None:
        refused = ", ".join(f"{kind} {n}" for kind, n in e2ee["refused_frames"].items() if n) or "none"
        lines.append(
            f"  e2ee: decrypted {e2ee['decrypted']}, refused {refused}, rotations {e2ee['rotations']}"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _kinds(text: str) -> tuple[MediaKind, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in _KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown media kind(s): {', '.join(unknown)} (use audio, video)")
    return tuple(k for k in _KINDS if k in names)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darktower bot", description="Join a meeting as a synthetic participant and report what it saw."
    )
    parser.add_argument("--server", required=True, help="control API base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--meeting", required=True, help="meeting id (created when it does not exist)")
    parser.add_argument(
        "--publish",
        type=_kinds,
        default=_KINDS,
        help="media to send: audio,video (default), audio, video, none",
    )
    parser.add_argument("--duration", type=_positive, default=10.0, help="seconds to stay (default 10)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--name", help="display name (default bot-<random>)")
    parser.add_argument(
        "--e2ee", action="store_true", help="encrypt media end to end (SFrame) and report what was decrypted"
    )
    parser.add_argument("--ca-file", help="CA bundle for a media server with a CA-signed certificate")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `darktower bot` (`argv` without the `bot` word)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    dt_logging.setup(args.log_level, "json" if args.json else "text", "bot")
    try:
        result = uvloop.run(
            run_bot(
                args.server,
                args.meeting,
                publish=args.publish,
                duration=args.duration,
                name=args.name,
                ca_file=args.ca_file,
                e2ee=args.e2ee,
            )
        )
    except ClientError as exc:
        print(f"darktower bot: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        print(describe(result))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
