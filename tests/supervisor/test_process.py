"""The pieces of the process model that need no child: restart back-off and the signal queue."""

from __future__ import annotations

import os
import select
import signal

from darktower.supervisor.process import restart_delay
from darktower.supervisor.signals import SignalQueue


def test_restart_delay_doubles_from_a_quarter_second_up_to_the_cap() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert restart_delay(1000) == 30.0
    assert restart_delay(3, base_s=1.0, cap_s=3.0) == 3.0


def test_caught_signals_become_readable_in_order_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    with SignalQueue([signal.SIGUSR1, signal.SIGUSR2]) as signals:
        assert select.select([signals], [], [], 0)[0] == []
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert select.select([signals], [], [], 5)[0] == [signals]
        assert signals.drain() == [signal.SIGUSR2, signal.SIGUSR1]
        assert signals.drain() == []
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)) == before
