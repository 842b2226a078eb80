"""The process model: start children, restart the ones that die or hang, replace workers, stop them all.

Each child is a function run in a fresh interpreter (multiprocessing "spawn": nothing of the supervisor's
state, threads or sockets leaks into it) as `target(*args(port), ready_conn)`, and reports the port it bound
with one message `{<ready_key>: port}` on `ready_conn`, or `{"error": why}` when it cannot start. A
restarted or replaced child is given the port its predecessor bound, so the URLs printed at start-up stay
true.

One loop waits on everything at once (`multiprocessing.connection.wait` over the signal pipe, the ready
pipes of starting children and every child's sentinel), gunicorn-style, and never blocks on one child: the
supervisor keeps ticking while a child starts or drains. Each tick (at least every quarter of the heartbeat
timeout, and every half watchdog interval under systemd) sends `WATCHDOG=1`, stamps the supervisor's own
heartbeat and checks the workers': a worker (a child with a heartbeat slot) that has not beaten for the
heartbeat timeout is SIGKILLed and restarted like any child that died.

- A child that dies is restarted after an exponential back-off, reset once a child has stayed up a while.
- SIGTERM stops gracefully: every child gets SIGTERM; a worker drains (finishes its sessions) for up to the
  drain timeout, and is SIGKILLed if it is still there after the stop timeout on top of that.
- SIGINT stops at once: every child gets SIGINT (a worker closes its sessions now), SIGKILL after the stop
  timeout. A SIGINT during a graceful stop turns it into this one.
- SIGHUP replaces the workers one at a time (`RELOADING=1`, then `READY=1` when the last one is ready). The
  new process serves the same socket, which two processes must not read at once (each would get a share of
  the other's datagrams), so the old process is stopped (SIGINT: its clients reconnect at once) first; what
  arrives meanwhile waits in the socket, which the supervisor keeps open. The control plane and the other
  workers serve throughout. A replacement that fails to
  start ends the round: the workers not yet replaced keep their processes, and the failed one is retried
  with back-off.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Final

from darktower.core.errors import DarkTowerError
from darktower.supervisor.notify import SystemdNotifier
from darktower.supervisor.signals import SignalQueue
from darktower.workers.heartbeat import HeartbeatTable, WorkerState

log = logging.getLogger(__name__)

HANDLED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STABLE_AFTER_S: Final = 60.0
"""A child that ran this long before dying is restarted without back-off history."""
_MAX_TICK_S: Final = 1.0


class SupervisorError(DarkTowerError):
    """Root of the supervisor's errors."""


class ChildFailedError(SupervisorError):
    """A child exited, failed or said nothing before it reported ready (during start-up)."""


class StopRequestedError(SupervisorError):
    """SIGTERM or SIGINT arrived."""


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
    slot: int | None = None
    """A worker's slot in the heartbeat table: it is watched by heartbeat and replaced by SIGHUP."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    ready_s: float = 30.0
    """From spawn to the ready message."""
    stop_s: float = 10.0
    """From SIGINT (or SIGTERM to the control plane) to SIGKILL."""
    drain_s: float = 30.0
    """A worker's own drain deadline after SIGTERM; the supervisor kills it `stop_s` later."""
    heartbeat_s: float = 3.0


class _Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    WAITING = "waiting"
    """Dead, waiting out the back-off before its restart."""
    STOPPED = "stopped"


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    port: int
    phase: _Phase = _Phase.STOPPED
    process: SpawnProcess | None = None
    receiver: Connection | None = None
    refusal: str | None = None
    """Why the starting child said it cannot start."""
    started_at: float = 0.0
    ready_at_ns: int = 0
    deadline: float = math.inf
    """STARTING: when it must be ready; STOPPING: when it is killed."""
    restart_at: float = math.inf
    failures: int = 0
    starts: int = 0
    replacing: bool = False
    """Stopped by a rolling restart: started again as soon as it exited."""


class Supervisor:
    def __init__(
        self,
        context: SpawnContext,
        signals: SignalQueue,
        *,
        timeouts: Timeouts = Timeouts(),
        table: HeartbeatTable | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self._context = context
        self._signals = signals
        self._timeouts = timeouts
        self._table = table
        self._notifier = notifier if notifier is not None else SystemdNotifier(None, None)
        self._children: list[_Child] = []
        self._running = False
        self._stopping: signal.Signals | None = None
        self._rolling: list[_Child] = []
        self._replacing: _Child | None = None
        self._reloading = False
        self._tick_s = min(
            _MAX_TICK_S, timeouts.heartbeat_s / 4, self._notifier.watchdog_interval_s or math.inf
        )
        self._next_tick = 0.0

    # --- public API ------------------------------------------------------------------------------------

    def start(self, spec: ChildSpec, port: int) -> int:
        """Starts a child asking for `port` (0 = any) and returns the port it bound once it is ready."""
        return self.start_all([(spec, port)])[0]

    def start_all(self, children: Sequence[tuple[ChildSpec, int]]) -> list[int]:
        """Starts the children together and returns their ports once all are ready.

        Raises ChildFailedError or StopRequestedError; either way the caller then calls `stop`.
        """
        started = [_Child(spec=spec, port=port) for spec, port in children]
        self._children.extend(started)
        for child in started:
            self._spawn(child)
        while any(child.phase is _Phase.STARTING for child in started):
            self._step(math.inf)
        return [child.port for child in started]

    def run(self, housekeeping: Callable[[], float] | None = None) -> None:
        """Supervises until SIGTERM/SIGINT. `housekeeping` runs at once, then again after the seconds it returns."""
        self._running = True
        next_housekeeping = time.monotonic() if housekeeping is not None else math.inf
        try:
            while True:
                if housekeeping is not None and time.monotonic() >= next_housekeeping:
                    next_housekeeping = time.monotonic() + housekeeping()
                self._step(next_housekeeping)
        except StopRequestedError:
            return

    def stop(self) -> None:
        """Stops every child as the stop signal asks (SIGINT when none came) and waits until all exited."""
        signum = self._stopping = self._stopping or signal.SIGINT
        self._running = False
        self._notifier.stopping()
        self._rolling.clear()
        self._replacing = None
        for child in reversed(self._children):
            child.replacing = False
            if child.process is None:
                self._set_phase(child, _Phase.STOPPED)
            elif child.phase is not _Phase.STOPPING:
                self._send_stop(child, signum)
        while any(child.process is not None for child in self._children):
            self._step(math.inf)

    # --- the loop --------------------------------------------------------------------------------------

    def _step(self, wake_at: float) -> None:
        """One turn: due work, then one wait for a signal, a ready message, an exit or the next deadline."""
        self._due_work(time.monotonic())
        due = min(
            [
                wake_at,
                self._next_tick,
                *(c.deadline for c in self._children),
                *(c.restart_at for c in self._children if c.phase is _Phase.WAITING),
            ]
        )
        owners: dict[Connection | int, _Child] = {}
        for child in self._children:
            if child.receiver is not None:
                owners[child.receiver] = child
            if child.process is not None:
                owners[child.process.sentinel] = child
        signals = self._signals.fileno()
        ready = wait([signals, *owners], max(0.0, due - time.monotonic()))
        if signals in ready:
            self._check_signals()
        for waited, owner in owners.items():
            if waited not in ready:
                continue
            if waited is owner.receiver:
                self._ready_message(owner, owner.receiver)
            elif owner.process is not None and waited == owner.process.sentinel:
                self._exited(owner, owner.process)

    def _due_work(self, now: float) -> None:
        if now >= self._next_tick:
            self._tick(now)
        for child in self._children:
            if child.phase is _Phase.WAITING and now >= child.restart_at and self._stopping is None:
                self._spawn(child)
            elif child.phase is _Phase.STARTING and now >= child.deadline:
                self._start_failed(
                    child, f"{child.spec.name} did not report ready within {self._timeouts.ready_s:.0f} s"
                )
            elif child.phase is _Phase.STOPPING and now >= child.deadline and child.process is not None:
                log.warning("%s did not stop in time; killing it", child.spec.name)
                child.process.kill()
                child.deadline = math.inf
        self._advance_rolling()

    def _tick(self, now: float) -> None:
        self._next_tick = now + self._tick_s
        if self._notifier.watchdog_interval_s is not None:
            self._notifier.watchdog()
        if self._table is None:
            return
        now_ns = time.monotonic_ns()
        self._table.supervisor_beat(now_ns)
        limit_ns = int(self._timeouts.heartbeat_s * 1e9)
        for child in self._children:
            slot = child.spec.slot
            if slot is None or child.phase is not _Phase.RUNNING or child.process is None:
                continue
            silent_ns = now_ns - max(self._table.beat_ns(slot), child.ready_at_ns)
            if silent_ns > limit_ns:
                log.warning(
                    "%s (pid %s) sent no heartbeat for %.1f s; killing it",
                    child.spec.name,
                    child.process.pid,
                    silent_ns / 1e9,
                )
                child.process.kill()
                child.phase = _Phase.STOPPING
                child.deadline = math.inf

    def _check_signals(self) -> None:
        stop = None
        for signum in self._signals.drain():
            if signum == signal.SIGHUP:
                self._hangup()
            elif self._stopping is None:
                stop = stop or signum
            elif signum == signal.SIGINT and self._stopping == signal.SIGTERM:
                log.info("SIGINT while draining: stopping at once")
                self._stopping = signal.SIGINT
                for child in self._children:
                    if child.process is not None:
                        self._send_stop(child, signal.SIGINT)
        if stop is not None:
            log.info("stopping on %s", stop.name)
            self._stopping = stop
            raise StopRequestedError("stop requested")

    # --- children --------------------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child.spec.target, args=(*child.spec.args(child.port), sender), name=child.spec.name
        )
        try:
            process.start()
        except OSError as exc:
            receiver.close()
            self._start_failed(child, f"cannot start {child.spec.name}: {exc}")
            return
        finally:
            sender.close()
        child.process, child.receiver, child.refusal = process, receiver, None
        child.started_at = time.monotonic()
        child.deadline = child.started_at + self._timeouts.ready_s
        child.restart_at = math.inf
        child.starts += 1
        child.phase = _Phase.STARTING
        if self._table is not None and child.spec.slot is not None:
            self._table.worker_spawned(
                child.spec.slot, process.pid or 0, time.monotonic_ns(), child.starts - 1
            )
        log.info("%s started (pid %s)", child.spec.name, process.pid)

    def _ready_message(self, child: _Child, receiver: Connection) -> None:
        try:
            message = receiver.recv()
        except EOFError:
            # The child closed its end: it is exiting, and its sentinel tells when.
            receiver.close()
            child.receiver = None
            return
        receiver.close()
        child.receiver = None
        if child.phase is not _Phase.STARTING:
            return
        name, key = child.spec.name, child.spec.ready_key
        if isinstance(message, dict) and isinstance(port := message.get(key), int):
            self._ready(child, port)
        elif isinstance(message, dict) and "error" in message:
            child.refusal = f"{name} cannot start: {message['error']}"
        else:
            self._start_failed(child, f"{name} sent {message!r} instead of {{{key!r}: port}}")

    def _ready(self, child: _Child, port: int) -> None:
        restarted = child.starts > 1
        child.port = port
        child.deadline = math.inf
        child.ready_at_ns = time.monotonic_ns()
        self._set_phase(child, _Phase.RUNNING)
        if self._table is not None and child.spec.slot is not None:
            self._table.set_port(child.spec.slot, port)
        pid = child.process.pid if child.process is not None else None
        if child is self._replacing:
            log.info("%s replaced (pid %s) on port %d", child.spec.name, pid, port)
            self._replacing = None
        elif restarted:
            log.info("%s restarted on port %d", child.spec.name, port)
        else:
            log.info("%s ready (pid %s) on port %d", child.spec.name, pid, port)

    def _exited(self, child: _Child, process: SpawnProcess) -> None:
        process.join()
        code = process.exitcode
        process.close()
        child.process = None
        if child.receiver is not None:
            child.receiver.close()
            child.receiver = None
        child.deadline = math.inf
        if child.phase is _Phase.STARTING:
            reason = child.refusal or f"{child.spec.name} exited (exit code {code}) before it was ready"
            self._start_failed(child, reason)
        elif self._stopping is not None:
            self._set_phase(child, _Phase.STOPPED)
            log.info("%s stopped (exit code %s)", child.spec.name, code)
        elif child.replacing:
            child.replacing = False
            log.info("%s exited (exit code %s) to be replaced", child.spec.name, code)
            self._spawn(child)
        else:
            if time.monotonic() - child.started_at >= STABLE_AFTER_S:
                child.failures = 0
            delay = self._back_off(child)
            log.warning(
                "%s exited unexpectedly (exit code %s); restarting in %.2f s", child.spec.name, code, delay
            )

    def _start_failed(self, child: _Child, reason: str) -> None:
        if child.process is not None:
            self._reap(child.process)
            child.process = None
        if child.receiver is not None:
            child.receiver.close()
            child.receiver = None
        child.deadline = math.inf
        if not self._running:
            self._set_phase(child, _Phase.STOPPED)
            raise ChildFailedError(reason)
        if child is self._replacing:
            log.error("rolling restart stopped: %s; the workers not yet replaced keep running", reason)
            self._replacing = None
            self._rolling.clear()
        delay = self._back_off(child)
        log.warning("%s; retrying in %.2f s", reason, delay)

    def _back_off(self, child: _Child) -> float:
        child.failures += 1
        delay = restart_delay(child.failures)
        child.restart_at = time.monotonic() + delay
        self._set_phase(child, _Phase.WAITING)
        return delay

    def _send_stop(self, child: _Child, signum: signal.Signals) -> None:
        assert child.process is not None
        if child.process.pid is not None:
            os.kill(child.process.pid, signum)
        drains = signum == signal.SIGTERM and child.spec.slot is not None
        wait_s = self._timeouts.drain_s + self._timeouts.stop_s if drains else self._timeouts.stop_s
        child.deadline = min(child.deadline, time.monotonic() + wait_s)
        child.phase = _Phase.STOPPING
        if self._table is not None and child.spec.slot is not None:
            self._table.set_state(child.spec.slot, WorkerState.DRAINING if drains else WorkerState.STOPPING)

    def _set_phase(self, child: _Child, phase: _Phase) -> None:
        child.phase = phase
        if self._table is not None and child.spec.slot is not None:
            self._table.set_state(child.spec.slot, _TABLE_STATES[phase])

    def _reap(self, process: SpawnProcess) -> None:
        if process.is_alive():
            process.terminate()
            process.join(self._timeouts.stop_s)
        if process.is_alive():
            process.kill()
        process.join()
        process.close()

    # --- rolling restart -------------------------------------------------------------------------------

    def _hangup(self) -> None:
        if not self._running or self._stopping is not None:
            log.info("SIGHUP ignored while starting or stopping")
            return
        queued = [
            child
            for child in self._children
            if child.spec.slot is not None and child not in self._rolling and child is not self._replacing
        ]
        if not self._reloading:
            self._reloading = True
            self._notifier.reloading()
        log.info("SIGHUP: replacing %d workers one at a time", len(queued))
        self._rolling.extend(queued)

    def _advance_rolling(self) -> None:
        if self._replacing is not None or self._stopping is not None:
            return
        while self._rolling:
            child = self._rolling.pop(0)
            if child.phase is not _Phase.RUNNING or child.process is None:
                continue  # starting or restarting already: it runs the new code anyway
            self._replacing = child
            child.replacing = True
            log.info("replacing %s (pid %s)", child.spec.name, child.process.pid)
            self._send_stop(child, signal.SIGINT)
            return
        if self._reloading:
            self._reloading = False
            log.info("rolling restart finished")
            self._notifier.ready()


_TABLE_STATES: Final = {
    _Phase.STARTING: WorkerState.STARTING,
    _Phase.RUNNING: WorkerState.RUNNING,
    _Phase.STOPPING: WorkerState.STOPPING,
    _Phase.WAITING: WorkerState.RESTARTING,
    _Phase.STOPPED: WorkerState.STOPPED,
}
