"""End-to-end encryption cost in the Python client (docs/E2EE.md): per frame, per rotation, per bot.

1. **Per frame.** `KeyManager.seal_frame` / `open_frame` on whole media frames: the 24-byte metadata slice,
   SFrame (AES_128_GCM_SHA256_128, the default suite) and the frame rebuilt with its new `payload_length`;
   everything a client pays per frame. Next to it, the bare `SFrameContext` cost of the same payload, so the
   frame-header path's own overhead shows. 100-byte audio, 4 KB and 25 KB video; best of `--repeats` runs.
2. **Key events.** A `HELLO` from a newcomer (ECDH, two HKDFs, the safety number, then a rotation to every
   member), a leave (a rotation: one wrapped `MEDIA_KEY` per remaining member) with 2, 10 and 50 members,
   and receiving one `MEDIA_KEY` (unwrap and SFrame key derivation).
3. **Share of a bot's CPU.** A real `darktower serve` on loopback and `--bots` bots (audio and video,
   `--seconds`) in one meeting. Measured: one `--e2ee` bot runs in this process with the key manager's
   frame and key-event methods timed in thread CPU time, against this process's CPU time (a busy machine
   inflates neither). Cross-checks: `--bots` bot processes with and without `--e2ee`, CPU seconds each
   from `wait4`, (with - without) / with (noisy: two separate runs); and the estimate from (1), one bot
   sealing 50 audio and 30 video frames a second and opening as many per peer.

    python bench/e2ee_bench.py [--frames 2000] [--repeats 5] [--bots 3] [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from darktower.client.api import ControlApi
from darktower.client.e2ee import KeyManager, Refused, SendKeyMessage
from darktower.client.keymessages import encode_hello
from darktower.client.media import synthetic_frame
from darktower.client.meeting import MeetingClient
from darktower.client.sframe import CipherSuite, SFrameContext

SIZES = (("audio 100 B", 100), ("video 4 KB", 4_000), ("video 25 KB", 25_000))
_READY = "darktower: ready"
_HTTP_URL = re.compile(r"HTTP API on (http://\S+)")


def _best_us(run: Callable[[], None], frames: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        run()
        best = min(best, (time.perf_counter_ns() - start) / 1_000 / frames)
    return best


def _pair() -> tuple[KeyManager, KeyManager]:
    """alice and bob, each holding the other's current key, past the rotation delay."""
    alice, bob = KeyManager(), KeyManager()
    managers = {"alice": alice, "bob": bob}
    queue: list[tuple[str, SendKeyMessage]] = []
    for action in alice.joined("alice", [], 0):
        assert isinstance(action, SendKeyMessage)
    alice.participant_joined("bob", e2ee=True, now_us=0)
    queue += [("bob", a) for a in bob.joined("bob", [("alice", True)], 0) if isinstance(a, SendKeyMessage)]
    while queue:
        sender, action = queue.pop(0)
        for recipient in action.to or tuple(p for p in managers if p != sender):
            replies = managers[recipient].receive(sender, action.payload, 0)
            queue += [(recipient, a) for a in replies if isinstance(a, SendKeyMessage)]
    return alice, bob


NOW_US = 1_000_000
"""Past the rotation delay, so both sides send under their current keys."""


def frame_cost(label: str, size: int, frames: int, repeats: int) -> dict[str, Any]:
    """Seal and open µs per whole media frame of `size` payload bytes, next to bare SFrame's."""
    alice, bob = _pair()
    frame = synthetic_frame(
        participant_id="alice", kind="video", track_id=1, group=0, object_seq=1, capture_us=0
    )
    frame = frame[:24] + size.to_bytes(4, "big") + os.urandom(size)

    def seal() -> None:
        for _ in range(frames):
            alice.seal_frame(frame, NOW_US)

    seal_us = _best_us(seal, frames, repeats)
    pending = iter([[alice.seal_frame(frame, NOW_US) for _ in range(frames)] for _ in range(repeats)])

    def open_() -> None:
        for sealed in next(pending):
            bob.open_frame("alice", sealed, NOW_US, video=False)

    open_us = _best_us(open_, frames, repeats)
    assert not isinstance(
        bob.open_frame("alice", alice.seal_frame(frame, NOW_US), NOW_US, video=False), Refused
    )
    assert bob.decrypted == frames * repeats + 1
    sframe_seal, sframe_open = _bare_sframe(size, frames, repeats)
    return {
        "frame": label,
        "seal_us": round(seal_us, 2),
        "open_us": round(open_us, 2),
        "sframe_encrypt_us": round(sframe_seal, 2),
        "sframe_decrypt_us": round(sframe_open, 2),
    }


def _bare_sframe(size: int, frames: int, repeats: int) -> tuple[float, float]:
    suite = CipherSuite.AES_128_GCM_SHA256_128
    plaintext, metadata, base_key = os.urandom(size), os.urandom(24), os.urandom(32)
    sender = SFrameContext(suite)
    sender.add_encryption_key(1, base_key)

    def encrypt() -> None:
        for _ in range(frames):
            sender.encrypt(1, plaintext, metadata)

    encrypt_us = _best_us(encrypt, frames, repeats)
    batch = [sender.encrypt(1, plaintext, metadata) for _ in range(frames)]
    receivers = []
    for _ in range(repeats):
        receiver = SFrameContext(suite, replay_window=frames)
        receiver.add_decryption_key(1, base_key)
        receivers.append(receiver)
    pending = iter(receivers)

    def decrypt() -> None:
        receiver = next(pending)
        for sealed in batch:
            receiver.decrypt(sealed, metadata)

    return encrypt_us, _best_us(decrypt, frames, repeats)


def key_event_costs(repeats: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for members in (2, 10, 50):
        hello_us, leave_us = float("inf"), float("inf")
        for _ in range(repeats):
            manager = KeyManager()
            manager.joined("self", [(f"p{i}", True) for i in range(members - 1)], 0)
            for i in range(members - 1):
                manager.receive(f"p{i}", encode_hello(KeyManager().identity.public_key), 0)
            manager.participant_joined("new", e2ee=True, now_us=0)
            hello = encode_hello(KeyManager().identity.public_key)
            start = time.perf_counter_ns()
            manager.receive("new", hello, 0)
            hello_us = min(hello_us, (time.perf_counter_ns() - start) / 1_000)
            manager.advance(10_000_000)
            start = time.perf_counter_ns()
            actions = manager.participant_left("p0", 10_000_000)
            leave_us = min(leave_us, (time.perf_counter_ns() - start) / 1_000)
            assert len(actions) == members - 1
        results.append(
            {"members": members, "newcomer_hello_us": round(hello_us), "leave_rotation_us": round(leave_us)}
        )
    alice, bob = _pair()
    receive_us = float("inf")
    for i in range(repeats * 20):
        now = (i + 1) * 10_000_000  # each rotation past the previous one's switch: none merges
        alice.advance(now)
        alice.participant_joined(f"n{i}", e2ee=True, now_us=now)
        actions = alice.receive(f"n{i}", encode_hello(KeyManager().identity.public_key), now)
        [to_bob] = [a for a in actions if isinstance(a, SendKeyMessage) and a.to == ("bob",)]
        start = time.perf_counter_ns()
        bob.receive("alice", to_bob.payload, now)
        receive_us = min(receive_us, (time.perf_counter_ns() - start) / 1_000)
        alice.participant_left(f"n{i}", now)
    results.append({"media_key_receive_us": round(receive_us, 1)})
    return results


@contextlib.contextmanager
def _serve() -> Iterator[str]:
    """A real `darktower serve` on free loopback ports; yields its control API URL."""
    data_dir = tempfile.mkdtemp(prefix="darktower-e2ee-bench-")
    executable = Path(sys.executable).with_name("darktower")
    process = subprocess.Popen(
        [str(executable), "serve", "--http-port", "0", "--quic-port", "0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # Every bot joins from 127.0.0.1: lift the per-address join limit.
        env={
            **os.environ,
            "DARKTOWER_RATE_LIMITS__JOIN_BURST": "1000000",
            "DARKTOWER_RATE_LIMITS__JOIN_PER_MINUTE": "1000000",
        },
    )
    try:
        assert process.stdout is not None
        http_url = ""
        for line in process.stdout:
            if match := _HTTP_URL.search(line):
                http_url = match.group(1)
            if _READY in line:
                break
        else:
            raise RuntimeError(f"darktower serve exited with {process.wait()} before it was ready")
        yield http_url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
        shutil.rmtree(data_dir, ignore_errors=True)


def _bot_cpu(
    http_url: str, meeting: str, bots: int, seconds: float, *, e2ee: bool
) -> tuple[list[float], list[dict[str, Any]]]:
    """CPU seconds of each bot process, and their JSON reports."""
    executable = Path(sys.executable).with_name("darktower")
    argv = [
        str(executable),
        "bot",
        "--server",
        http_url,
        "--meeting",
        meeting,
        "--duration",
        str(seconds),
        "--json",
    ]
    processes = [
        subprocess.Popen(
            [*argv, *(["--e2ee"] if e2ee else [])], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        for _ in range(bots)
    ]
    cpu: list[float] = [0.0] * bots
    outputs: list[bytes] = [b""] * bots

    def reap(index: int, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        outputs[index] = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        cpu[index] = usage.ru_utime + usage.ru_stime

    threads = [threading.Thread(target=reap, args=(i, p)) for i, p in enumerate(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reports = [json.loads(out.decode().strip().splitlines()[-1]) for out in outputs]
    return cpu, reports


class _CpuMeter:
    """Thread CPU time spent inside the key manager's frame and key-event methods, patched on the class."""

    FRAME_METHODS = ("seal_frame", "open_frame")
    EVENT_METHODS = ("joined", "participant_joined", "participant_left", "receive")

    def __init__(self) -> None:
        self.ns = {"frames": 0, "key_events": 0}
        self._originals: dict[str, Any] = {}

    def __enter__(self) -> Self:
        for bucket, names in (("frames", self.FRAME_METHODS), ("key_events", self.EVENT_METHODS)):
            for name in names:
                original = self._originals[name] = getattr(KeyManager, name)
                setattr(KeyManager, name, self._timed(bucket, original))
        return self

    def __exit__(self, *_: object) -> None:
        for name, original in self._originals.items():
            setattr(KeyManager, name, original)

    def _timed(self, bucket: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return original(*args, **kwargs)
            finally:
                self.ns[bucket] += time.thread_time_ns() - start

        return timed


async def _measured_bot(http_url: str, meeting: str, others: int, seconds: float) -> dict[str, Any]:
    """An e2ee bot in this process: once it decrypts every other bot, `seconds` of its CPU time and of the
    key manager's share of it."""
    async with ControlApi(http_url) as api:
        await api.ensure_meeting(meeting)
        client = MeetingClient(api, meeting, "measured", auto_subscribe=True, e2ee=True)
        await client.join()
        await client.publish("audio")
        await client.publish("video")
        try:
            async with asyncio.timeout(120):  # the other bots are processes still starting
                await client.wait_until(
                    lambda: (
                        len(client.roster) >= others
                        and all(client.stats.track(pid, "video").received > 0 for pid in client.roster)
                    )
                )
            with _CpuMeter() as meter:
                start, sent = time.process_time_ns(), dict(client.sent)
                await asyncio.sleep(seconds)
                total = time.process_time_ns() - start
        finally:
            await client.leave()
    assert client.keys is not None
    return {
        "bot_cpu_s": round(total / 1e9, 2),
        "frames_cpu_ms": round(meter.ns["frames"] / 1e6, 1),
        "key_events_cpu_ms": round(meter.ns["key_events"] / 1e6, 1),
        "e2ee_share_percent": round(100 * (meter.ns["frames"] + meter.ns["key_events"]) / total, 1),
        "sent": {kind: n - sent[kind] for kind, n in client.sent.items()},
        "decrypted_total": client.keys.decrypted,
        "refused_total": {kind.value: n for kind, n in client.keys.refused_frames.items() if n},
    }


def _in_process_bot(http_url: str, meeting: str, others: int, seconds: float) -> dict[str, Any]:
    """`_measured_bot` with `others` e2ee bot processes in the meeting (they outstay it; then stopped)."""
    executable = Path(sys.executable).with_name("darktower")
    argv = [str(executable), "bot", "--server", http_url, "--meeting", meeting, "--duration", "600"]
    processes = [
        subprocess.Popen([*argv, "--e2ee", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(others)
    ]
    try:
        return asyncio.run(_measured_bot(http_url, meeting, others, seconds))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def bot_share(bots: int, seconds: float, frame: list[dict[str, Any]]) -> dict[str, Any]:
    with _serve() as http_url:
        plain_cpu, _ = _bot_cpu(http_url, "plain", bots, seconds, e2ee=False)
        e2ee_cpu, reports = _bot_cpu(http_url, "secret", bots, seconds, e2ee=True)
        measured = _in_process_bot(http_url, "measured", bots - 1, seconds)
    by_label = {row["frame"]: row for row in frame}
    per_second_us = sum(
        rate * (by_label[label]["seal_us"] + (bots - 1) * by_label[label]["open_us"])
        for label, rate in (("audio 100 B", 50), ("video 4 KB", 29), ("video 25 KB", 1))
    )
    plain, e2ee = sum(plain_cpu) / bots, sum(e2ee_cpu) / bots
    return {
        "bots": bots,
        "seconds": seconds,
        "in_process_bot": measured,
        "cpu_s_per_bot_plain": round(plain, 2),
        "cpu_s_per_bot_e2ee": round(e2ee, 2),
        "a_b_share_percent": round(100 * (e2ee - plain) / e2ee, 1),
        "estimated_crypto_ms_per_s": round(per_second_us / 1000, 2),
        "estimated_share_percent": round(100 * per_second_us / 1e6 * seconds / e2ee, 1),
        "decrypted_per_bot": [r["e2ee"]["decrypted"] for r in reports],
        "refused_per_bot": [{k: n for k, n in r["e2ee"]["refused_frames"].items() if n} for r in reports],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bots", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    frames = [frame_cost(label, size, args.frames, args.repeats) for label, size in SIZES]
    events = key_event_costs(args.repeats)
    share = bot_share(args.bots, args.seconds, frames)
    if args.json:
        print(
            json.dumps(
                {"python": sys.version.split()[0], "frames": frames, "key_events": events, "bot": share}
            )
        )
        return 0
    print(
        f"E2EE per frame (AES_128_GCM_SHA256_128), Python {sys.version.split()[0]}, best of {args.repeats} x {args.frames}"
    )
    print(f"{'frame':<12} {'seal µs':>9} {'open µs':>9} {'bare SFrame enc':>16} {'bare SFrame dec':>16}")
    for row in frames:
        print(
            f"{row['frame']:<12} {row['seal_us']:>9.2f} {row['open_us']:>9.2f}"
            f" {row['sframe_encrypt_us']:>16.2f} {row['sframe_decrypt_us']:>16.2f}"
        )
    print("key events (µs):", json.dumps(events))
    print("bots:", json.dumps(share))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
