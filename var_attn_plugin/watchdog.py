"""Runs that never hang or end without saying why: bounded waiting for the other ranks of a
distributed run (``--heartbeat-timeout N``), and divergence named as such.

fairseq's own heartbeat (``DistributedTimeoutWrapper``) sends SIGINT to its process when no
forward pass starts for N seconds. A process whose peer has stopped or died is blocked inside
a collective (the gradient all-reduce, in C++), where Python never gets to handle the signal:
with gloo on CPU the surviving ranks wait forever, silently (until the process group's own
30-minute timeout, if ever).

:class:`Watchdog` is a daemon thread fed by the task at every training and validation step.
When N seconds pass without a step it logs which rank gave up and why, flushes the logs and
ends the process with exit status 1 (``os._exit``, which works whatever the main thread is
blocked in). It is armed, like fairseq's, only for distributed runs with a positive
``--heartbeat-timeout`` and from the first step on. N must exceed the longest pause between two
steps of a healthy run (a checkpoint save, the start of an epoch).

The start-up rendezvous is timed too (:func:`install_startup_watchdog`): a rank that never
starts (or cannot reach ``--distributed-init-method``) used to leave the others waiting at
"distributed init" forever, whatever ``--heartbeat-timeout``. Every rank that does not see all
``--distributed-world-size`` ranks join within N seconds ends the same way, with a message
naming the init method. Data loading and the loading of checkpoints, between the rendezvous
and the first step, are not timed.

Divergence (:func:`install_divergence_report`): NaN or inf gradients make fairseq's trainer
raise ``FloatingPointError`` and re-run the update under its ``NanDetector``, whose backward
hooks crashed on this plugin's encoder (its output is a dict without tensors at the top), so
the run ended in a bare ``StopIteration``. The detector now watches the forward pass only (it
still logs the first module whose output is NaN or inf), and the run ends with one line naming
the update that diverged and the fixes: a lower ``--lr``, ``--clip-norm``, or resuming from an
earlier checkpoint (exit status 1).
"""

import functools
import logging
import os
import sys
import threading
from typing import Callable, Optional

from .errors import UsageError

logger = logging.getLogger(__name__)

EXIT_STATUS = 1


class Watchdog:
    def __init__(self, timeout: float, rank: int, exit: Callable[[int], None] = os._exit,
                 reason: Optional[str] = None):
        self.timeout = float(timeout)
        self.rank = rank
        self.reason = reason  # the message when it fires; default: no training or validation step
        self._exit = exit
        self._beat = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self.fired = False

    def pulse(self):
        """A step is starting or has ended: restart the clock (and start the thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="varattn-watchdog", daemon=True)
            self._thread.start()
        self._beat.set()

    def stop(self):
        """Disarm: what was waited for has happened."""
        self._stopped = True
        self._beat.set()

    def _watch(self):
        while True:
            self._beat.clear()
            if self._beat.wait(self.timeout):
                if self._stopped:
                    return
                continue
            if self._stopped:
                return
            self.fired = True
            if self.reason is not None:
                logger.error("rank %d: %s Ending this process (exit status %d).", self.rank, self.reason,
                             EXIT_STATUS)
            else:
                logger.error(
                    "rank %d: no training or validation step for %g s (--heartbeat-timeout): another "
                    "rank has stopped, hung or died, and this one is blocked waiting for it. Ending "
                    "this process (exit status %d); resume with the same command from the last "
                    "checkpoint.", self.rank, self.timeout, EXIT_STATUS)
            for stream in logging.getLogger().handlers + logger.handlers + [sys.stdout, sys.stderr]:
                try:  # a handler or stream someone closed must not keep the process from ending
                    stream.flush()
                except (OSError, ValueError):
                    pass
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


# ------------------------------------------------------------------ the distributed rendezvous


def startup_watchdog_for(cfg, exit: Callable[[int], None] = os._exit) -> Optional[Watchdog]:
    """A watchdog for fairseq's ``distributed_init(cfg)`` when ``--heartbeat-timeout`` > 0 and
    the run has several ranks, else None."""
    distributed = getattr(cfg, "distributed_training", None)
    timeout = getattr(distributed, "heartbeat_timeout", -1)
    world_size = getattr(distributed, "distributed_world_size", 1) or 1
    if not timeout or timeout <= 0 or world_size < 2:
        return None
    rank = getattr(distributed, "distributed_rank", 0) or 0
    init = getattr(distributed, "distributed_init_method", None)
    return Watchdog(timeout, rank, exit=exit, reason=(
        f"not all {world_size} ranks of the distributed run joined within {timeout:g} s (--heartbeat-timeout) "
        f"at --distributed-init-method {init}: a rank has not started, failed before joining, or cannot reach "
        "that address. Start every rank with the same --distributed-init-method and --distributed-world-size "
        "(each with its own --distributed-rank), or raise --heartbeat-timeout if they start slowly."))


def _timed_distributed_init(original):
    @functools.wraps(original)
    def distributed_init(cfg):
        import torch

        watchdog = None
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            watchdog = startup_watchdog_for(cfg)
        if watchdog is None:
            return original(cfg)
        watchdog.pulse()
        try:
            return original(cfg)
        finally:
            watchdog.stop()

    distributed_init.varattn_timed = True
    return distributed_init


def install_startup_watchdog() -> None:
    """Time fairseq's ``distributed_init`` with ``--heartbeat-timeout`` (idempotent)."""
    from fairseq.distributed import utils as distributed_utils

    if not getattr(distributed_utils.distributed_init, "varattn_timed", False):
        distributed_utils.distributed_init = _timed_distributed_init(distributed_utils.distributed_init)


# ------------------------------------------------------------------ divergence


class TrainingDiverged(UsageError):
    """NaN or inf gradients: reported as one line with the fixes (exit status 1)."""


def _is_divergence(error: FloatingPointError) -> bool:
    text = str(error).lower()
    return "inconsistent between workers" not in text and ("nan" in text or "inf" in text or "loss scale" in text)


def divergence_message(trainer, error: BaseException) -> str:
    from .checkpoint_safety import newest_intact_checkpoint

    cfg = trainer.cfg
    update = trainer.get_num_updates() + 1
    lr = getattr(cfg.optimization, "lr", None)
    try:
        lr = ",".join(f"{float(value):g}" for value in lr)
    except TypeError:  # a single number
        lr = f"{lr:g}" if isinstance(lr, (int, float)) else lr
    clip = getattr(cfg.optimization, "clip_norm", 0) or 0
    save_dir = getattr(cfg.checkpoint, "save_dir", None)
    suffix = getattr(trainer, "checkpoint_suffix", "") or ""
    intact = newest_intact_checkpoint(save_dir, suffix) if save_dir else None
    resume = (f"and resume from an earlier checkpoint, e.g. --restore-file {intact} (the newest in --save-dir)"
              if intact else f"and train again (no checkpoint was saved before update {update})")
    detail = str(error).splitlines()[0] if str(error) else ""
    detail = "" if detail.lower().startswith("gradients are nan/inf") else f" ({detail})"
    return (f"training diverged at update {update}: its gradients are NaN or inf{detail}. Lower --lr (this run: "
            f"{lr}) or clip the gradients with --clip-norm (e.g. --clip-norm 1; this run: "
            f"{clip:g}{' = off' if not clip else ''}), {resume}")


def _reported_train_step(original):
    @functools.wraps(original)
    def train_step(self, samples, raise_oom=False):
        try:
            return original(self, samples, raise_oom)
        except FloatingPointError as error:
            if not _is_divergence(error):
                raise
            raise TrainingDiverged(divergence_message(self, error)) from error

    train_step.varattn_divergence = True
    return train_step


def install_divergence_report() -> None:
    """NaN or inf gradients end fairseq-train with :class:`TrainingDiverged` (idempotent)."""
    from fairseq import trainer as trainer_module
    from fairseq.nan_detector import NanDetector

    class ForwardNanDetector(NanDetector):
        """fairseq's detector on the forward pass only: its backward hooks (``register_backward_hook``)
        fail on modules whose output holds no tensor at the top level, as this plugin's encoder's."""

        def __init__(self, model, forward=True, backward=False):
            super().__init__(model, forward=forward, backward=False)

        def __exit__(self, exc_type, exc_value, exc_traceback):
            # the names of the parameters with NaN/inf gradients (fairseq's dumped every tensor)
            names = [name for name, param in self.named_parameters
                     if param.grad is not None and not bool(param.grad.detach().float().isfinite().all())]
            if names:
                logger.warning("NaN or inf gradients in %d of %d parameters: %s%s", len(names),
                               len(self.named_parameters), ", ".join(names[:8]), ", ..." if len(names) > 8 else "")
            self.close()

    Trainer = trainer_module.Trainer
    if not getattr(Trainer.train_step, "varattn_divergence", False):
        Trainer.train_step = _reported_train_step(Trainer.train_step)
        trainer_module.NanDetector = ForwardNanDetector
