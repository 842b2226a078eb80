"""Three bots in one meeting, against a real worker and control plane, receive each other's audio and video
byte for byte; one of them runs as the `darktower bot` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

import pytest

from darktower.client.bot import main, run_bot

if TYPE_CHECKING:
    from conftest import Cluster


async def run_cli_bot(cluster: Cluster, meeting: str, duration: float, *options: str) -> dict[str, Any]:
    """`darktower bot` as a separate process; returns the JSON object on its last stdout line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "darktower.client.bot",
        "--server",
        cluster.http_url,
        "--meeting",
        meeting,
        "--duration",
        str(duration),
        "--name",
        "cli-bot",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().strip().splitlines()
    assert lines[0].startswith("bot "), "without --json a summary for people comes first"
    result: dict[str, Any] = json.loads(lines[-1])
    result["summary_for_people"] = lines[:-1]
    return result


async def test_three_bots_receive_each_others_media_byte_exact(cluster: Cluster) -> None:
    reports = await asyncio.gather(
        # The command-line bot starts a process first (seconds on a loaded machine): the others outstay it.
        run_bot(cluster.http_url, "standup", duration=9.0, name="bot-a"),
        run_bot(cluster.http_url, "standup", duration=9.0, name="bot-b"),
        run_cli_bot(cluster, "standup", duration=4.0),
    )
    ids = {report["participant_id"] for report in reports}
    assert len(ids) == 3
    for report in reports:
        assert report["sent"]["audio"] > 0
        assert report["sent"]["video"] > 0
        others = ids - {report["participant_id"]}
        assert set(report["received"]) == others, report
        for counts in report["received"].values():
            assert counts["audio"] > 0, report
            assert counts["video"] > 0, report
        assert report["corrupt"] == 0, report
        assert report["join_to_first_media_ms"] is not None
        assert report["latency_ms"]["p50"] is not None
        assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"]
        assert set(report) >= {"lost", "out_of_order"}
        assert report["e2ee"] is None


async def test_encrypting_bots_decrypt_each_other_and_report_it(cluster: Cluster) -> None:
    reports = await asyncio.gather(
        run_bot(cluster.http_url, "e2ee", duration=9.0, name="bot-a", e2ee=True),
        run_cli_bot(cluster, "e2ee", 4.0, "--e2ee"),
    )
    for report, other in (reports, reports[::-1]):
        counts = report["received"][other["participant_id"]]
        assert counts["audio"] > 0, report
        assert counts["video"] > 0, report
        assert report["corrupt"] == report["unverified"] == 0, report
        e2ee = report["e2ee"]
        assert e2ee["decrypted"] == counts["audio"] + counts["video"], report
        assert e2ee["plaintext"] == 0
        assert e2ee["refused_frames"]["auth"] == e2ee["refused_frames"]["replay"] == 0
        assert sum(e2ee["refused_key_messages"].values()) == 0
    assert any(line.startswith("  e2ee: decrypted ") for line in reports[1]["summary_for_people"])


async def test_a_bot_that_publishes_nothing_still_receives(cluster: Cluster) -> None:
    talker, listener = await asyncio.gather(
        run_bot(cluster.http_url, "listen", publish=("audio",), duration=2.0),
        run_bot(cluster.http_url, "listen", publish=(), duration=2.0),
    )
    assert listener["sent"] == {"audio": 0, "video": 0}
    assert listener["received"][talker["participant_id"]]["audio"] > 0
    assert listener["received"][talker["participant_id"]]["video"] == 0
    assert talker["received"] == {}
    assert talker["sent"]["video"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--meeting", "m"],
        ["--server", "http://127.0.0.1:1", "--meeting", "m", "--publish", "audio,bogus"],
        ["--server", "http://127.0.0.1:1", "--meeting", "m", "--duration", "0"],
    ],
)
def test_a_bad_command_line_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "usage: darktower bot" in capsys.readouterr().err
