"""Children die with the supervisor: a SIGKILLed supervisor must not leave workers holding the ports.

A child calls `exit_with_parent` first thing in its entry function. Linux then sends it `signum` when the
supervisor dies, however it dies (`prctl(PR_SET_PDEATHSIG)`; the signal follows the death of the thread
that spawned the child, which is the supervisor's main thread). If the supervisor died before the call, the
child notices that its parent changed and signals itself. Each child picks the signal that stops it
promptly and cleanly.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from typing import Final

_PR_SET_PDEATHSIG: Final = 1
"""From <linux/prctl.h>."""


def exit_with_parent(signum: signal.Signals) -> None:
    """Arranges for `signum` to arrive when the process that spawned this one dies.

    Does nothing in a process that multiprocessing did not spawn (nothing to follow).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent.pid:
        os.kill(os.getpid(), signum)
