"""Bounded waiting for the other ranks of a distributed run (``--heartbeat-timeout N``).

fairseq's own heartbeat (``DistributedTimeoutWrapper``) sends SIGINT to its process when no
forward pass starts for N seconds. A process whose peer has stopped or died is blocked inside
a collective (the gradient all-reduce, in C++), where Python never gets to handle the signal:
with gloo on CPU the surviving ranks wait forever, silently (until the process group's own
30-minute timeout, if ever).

:class:`Watchdog` is a daemon thread fed by the task at every training and validation step.
When N seconds pass without a step it logs which rank gave up and why, flushes the logs and
ends the process with exit status 1 (``os._exit``, which works whatever the main thread is
blocked in). It is armed, like fairseq's, only for distributed runs with a positive
``--heartbeat-timeout`` and only from the first step on (start-up, data loading and the
rendezvous are not timed). N must exceed the longest pause between two steps of a healthy
run (a checkpoint save, the start of an epoch).
"""

import logging
import os
import sys
import threading
from typing import Callable, Optional

logger = logging.getLogger(__name__)

EXIT_STATUS = 1


class Watchdog:
    def __init__(self, timeout: float, rank: int, exit: Callable[[int], None] = os._exit):
        self.timeout = float(timeout)
        self.rank = rank
        self._exit = exit
        self._beat = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.fired = False

    def pulse(self):
        """A step is starting or has ended: restart the clock (and start the thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="varattn-watchdog", daemon=True)
            self._thread.start()
        self._beat.set()

    def _watch(self):
        while True:
            self._beat.clear()
            if self._beat.wait(self.timeout):
                continue
            self.fired = True
            logger.error(
                "rank %d: no training or validation step for %g s (--heartbeat-timeout): another "
                "rank has stopped, hung or died, and this one is blocked waiting for it. Ending "
                "this process (exit status %d); resume with the same command from the last "
                "checkpoint.", self.rank, self.timeout, EXIT_STATUS)
            for handler in logging.getLogger().handlers + logger.handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            self._exit(EXIT_STATUS)
            return


def watchdog_for(timeout: Optional[int]) -> Optional[Watchdog]:
    """A watchdog for this process when the run is distributed and ``timeout`` > 0, else None."""
    import torch

    if not timeout or timeout <= 0:
        return None
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    if torch.distributed.get_world_size() < 2:
        return None
    return Watchdog(timeout, torch.distributed.get_rank())
