"""The process model: start children in order, restart the ones that die, stop them all on a signal.

Each child is a function run in a fresh interpreter (multiprocessing "spawn": nothing of the supervisor's
state, threads or sockets leaks into it) as `target(*args(port), ready_conn)`, and reports the port it bound
with one message `{<ready_key>: port}` on `ready_conn`, or `{"error": why}` when it cannot start. A restarted child is given the port its predecessor
bound, so the URLs printed at start-up stay true.

One loop waits on everything at once (`multiprocessing.connection.wait` over the signal pipe and each child's
sentinel), gunicorn-style: SIGTERM or SIGINT stops the children (SIGTERM, then SIGKILL after a grace
period); a child that exits on its own is restarted after an exponential back-off, reset once a child has
stayed up for a while; periodic housekeeping (certificate rotation) runs between events.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Final

from darktower.core.errors import DarkTowerError
from darktower.supervisor.signals import SignalQueue

log = logging.getLogger(__name__)

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
STABLE_AFTER_S: Final = 60.0
"""A child that ran this long before dying is restarted without back-off history."""


class SupervisorError(DarkTowerError):
    """Root of the supervisor's errors."""


class ChildFailedError(SupervisorError):
    """A child exited, or said nothing, before it reported ready."""


class StopRequestedError(SupervisorError):
    """SIGTERM or SIGINT arrived while the supervisor was waiting for a child."""


def restart_delay(failures: int, *, base_s: float = 0.25, cap_s: float = 30.0) -> float:
    """Seconds before restart number `failures` (1, 2, ...) of a child: doubling from `base_s` up to `cap_s`."""
    return min(cap_s, base_s * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    target: Callable[..., None]
    """Module-level function (it is pickled by reference); called as `target(*args(port), ready_conn)`."""
    args: Callable[[int], tuple[Any, ...]]
    ready_key: str
    """Key of the ready message that carries the bound port."""


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    port: int
    process: SpawnProcess | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        context: SpawnContext,
        signals: SignalQueue,
        *,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._context = context
        self._signals = signals
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._children: list[_Child] = []

    def start(self, spec: ChildSpec, port: int) -> int:
        """Starts a child asking for `port` (0 = any) and returns the port it bound once it is ready.

        Raises ChildFailedError or StopRequestedError; either way the caller then calls `stop`.
        """
        child = _Child(spec=spec, port=port)
        self._children.append(child)
        child.port = self._spawn(child)
        return child.port

    def run(self, housekeeping: Callable[[], float] | None = None) -> None:
        """Supervises until SIGTERM/SIGINT. `housekeeping` runs at once, then again after the seconds it returns."""
        next_housekeeping = self._clock() if housekeeping is not None else math.inf
        try:
            while True:
                now = self._clock()
                if housekeeping is not None and now >= next_housekeeping:
                    next_housekeeping = now + housekeeping()
                for child in self._children:
                    if child.restart_at is not None and now >= child.restart_at:
                        self._restart(child)
                self._wait_for_event(next_housekeeping)
        except StopRequestedError:
            return

    def stop(self) -> None:
        """SIGTERM to every child, SIGKILL to those still alive after the grace period; waits for all."""
        running = [(c, c.process) for c in reversed(self._children) if c.process is not None]
        for _, process in running:
            if process.is_alive():
                process.terminate()
        deadline = self._clock() + self._stop_timeout_s
        for child, process in running:
            process.join(max(0.0, deadline - self._clock()))
            if process.exitcode is None:
                log.warning("%s did not stop in %.0f s; killing it", child.spec.name, self._stop_timeout_s)
                process.kill()
                process.join()
            log.info("%s stopped (exit code %s)", child.spec.name, process.exitcode)
            process.close()
            child.process = None

    def _wait_for_event(self, next_housekeeping: float) -> None:
        due = min([next_housekeeping, *(c.restart_at for c in self._children if c.restart_at is not None)])
        timeout = None if math.isinf(due) else max(0.0, due - self._clock())
        running = {c.process.sentinel: c for c in self._children if c.process is not None}
        signals = self._signals.fileno()
        ready = wait([signals, *running], timeout)
        if signals in ready:
            self._check_signals()
        for sentinel, child in running.items():
            if sentinel in ready:
                self._child_exited(child)

    def _check_signals(self) -> None:
        caught = self._signals.drain()
        if any(signum in STOP_SIGNALS for signum in caught):
            log.info("stopping on %s", ", ".join(s.name for s in caught))
            raise StopRequestedError("stop requested")

    def _child_exited(self, child: _Child) -> None:
        assert child.process is not None
        child.process.join()
        code = child.process.exitcode
        child.process.close()
        child.process = None
        now = self._clock()
        if now - child.started_at >= STABLE_AFTER_S:
            child.failures = 0
        child.failures += 1
        delay = restart_delay(child.failures)
        child.restart_at = now + delay
        log.warning(
            "%s exited unexpectedly (exit code %s); restarting in %.2f s", child.spec.name, code, delay
        )

    def _restart(self, child: _Child) -> None:
        child.restart_at = None
        try:
            self._spawn(child)
        except ChildFailedError as exc:
            child.failures += 1
            delay = restart_delay(child.failures)
            child.restart_at = self._clock() + delay
            log.warning("%s; retrying in %.2f s", exc, delay)
            return
        log.info("%s restarted on port %d", child.spec.name, child.port)

    def _spawn(self, child: _Child) -> int:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child.spec.target, args=(*child.spec.args(child.port), sender), name=child.spec.name
        )
        process.start()
        sender.close()
        child.process = process
        child.started_at = self._clock()
        log.info("%s started (pid %s)", child.spec.name, process.pid)
        try:
            return self._await_ready(child, process, receiver)
        except ChildFailedError:
            self._reap(process)
            child.process = None
            raise
        finally:
            receiver.close()

    def _await_ready(self, child: _Child, process: SpawnProcess, receiver: Connection) -> int:
        name, key = child.spec.name, child.spec.ready_key
        deadline = self._clock() + self._ready_timeout_s
        while (remaining := deadline - self._clock()) > 0:
            signals = self._signals.fileno()
            ready = wait([signals, receiver, process.sentinel], remaining)
            if signals in ready:
                self._check_signals()
            if receiver in ready:
                try:
                    message = receiver.recv()
                except EOFError:
                    process.join(self._stop_timeout_s)
                    raise ChildFailedError(
                        f"{name} exited (exit code {process.exitcode}) before it was ready"
                    ) from None
                return _port_of(name, key, message)
            if process.sentinel in ready:
                raise ChildFailedError(f"{name} exited (exit code {process.exitcode}) before it was ready")
        raise ChildFailedError(f"{name} did not report ready within {self._ready_timeout_s:.0f} s")

    def _reap(self, process: SpawnProcess) -> None:
        if process.is_alive():
            process.terminate()
            process.join(self._stop_timeout_s)
        if process.is_alive():
            process.kill()
        process.join()
        process.close()


def _port_of(name: str, key: str, message: object) -> int:
    """The port of a ready message `{key: port}`; a child that cannot start sends `{"error": why}` instead."""
    if isinstance(message, dict):
        if isinstance(port := message.get(key), int):
            return port
        if "error" in message:
            raise ChildFailedError(f"{name} cannot start: {message['error']}")
    raise ChildFailedError(f"{name} sent {message!r} instead of {{{key!r}: port}}")
