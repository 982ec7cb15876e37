"""Training that resumes exactly and samples per rank: the ``varattn_translation`` task's hooks.

Three sources of randomness decide a training run, and each is a function of what a
checkpoint holds, so a run stopped at any point (``--max-update``, SIGKILL, a crash) and
restarted with the same command continues the uninterrupted run bit for bit on the CPU:

- the data order: the batches (fairseq's ``batch_by_size`` over ``ordered_indices``, whose
  ties between equal lengths are broken by a permutation seeded with ``seed + epoch``) are
  built once and then only shuffled per epoch (seeded ``seed + epoch``) and sharded over the
  ranks. fairseq builds them from the epoch in which the iterator is first created: epoch 1
  in an uninterrupted run, but the epoch of the checkpoint when resuming, so a run resumed in
  its second epoch or later saw other batches (some sentences twice, others not at all in
  the interrupted epoch). :func:`batch_iterator_of_first_epoch` builds them from epoch 1
  whenever fairseq reuses the iterator across epochs; the position within the epoch is
  fairseq's own (``extra_state["train_iterator"]``: epoch, ``iterations_in_epoch``);
- dropout: torch's global generator, which fairseq's trainer reseeds with ``seed +
  num_updates`` before every update (the same seed on every rank, as in all of fairseq);
- the latent samples (Gumbel, categorical and Dirichlet noise): :class:`UpdateNoise`, a
  generator of their own per update, seeded from ``(seed, data-parallel rank, num_updates)``
  (:func:`var_attn_plugin.latent.distributions.noise_seed`), so every rank draws its own noise.

The early stopping of ``--patience`` counts validations without improvement in attributes of
fairseq's ``should_stop_early`` (the best value and the count), which fairseq does not save:
a resumed run started counting anew, from whatever its first validation gave, so it stopped
later than the uninterrupted run. :func:`early_stopping_state` and
:func:`restore_early_stopping` keep them in the checkpoint (the task's checkpoint dict).
Likewise ``reduce_lr_on_plateau`` (:func:`exact_plateau_schedule`): fairseq saves torch's best
value but not its count of validations without improvement, so with ``--lr-patience`` above 0 a
resumed run halved the lr later; and fairseq-train steps the scheduler with an epoch's
validation only after it has saved the end-of-epoch checkpoint, so a run resumed from that
checkpoint never showed the scheduler that validation (the uninterrupted run halved after it,
the resumed one did not).

Validation and decoding draw no noise. Not covered: ``--update-ordered-indices-seed``, with
which fairseq also shuffles with the seed of the epoch the iterator was created in. On GPUs
non-deterministic kernels (cuDNN, atomic adds) make a resumed run equal in distribution only.
"""

from typing import Callable, Optional

import torch
from fairseq.data import iterators

from .latent.distributions import noise_seed


def data_parallel_rank() -> int:
    """This process's data-parallel rank; 0 without ``torch.distributed``."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0
    from fairseq.distributed import utils as distributed_utils

    return distributed_utils.get_data_parallel_rank()


class UpdateNoise:
    """One ``torch.Generator`` per update, seeded from ``(seed, rank, num_updates)``.

    The micro-batches of one update (``--update-freq``) draw from the same generator one after
    the other; the next update starts a freshly seeded one. The generator lives on the
    model's device (CUDA kernels need a CUDA generator).
    """

    def __init__(self, seed: int, rank: Optional[Callable[[], int]] = None):
        self.seed = int(seed)
        self.rank = rank
        self._update: Optional[int] = None
        self._generator: Optional[torch.Generator] = None

    def generator(self, device: torch.device, num_updates: int) -> torch.Generator:
        if self._generator is None or self._update != num_updates or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            rank = self.rank() if self.rank is not None else data_parallel_rank()
            self._generator.manual_seed(noise_seed(self.seed, rank, num_updates))
            self._update = num_updates
        return self._generator


def batch_iterator_of_first_epoch(build: Callable[..., iterators.EpochBatchIterator], task, dataset,
                                  **kwargs) -> iterators.EpochBatchIterator:
    """``build(dataset, **kwargs)`` (fairseq's ``get_batch_iterator``), with the batches of epoch 1
    whenever fairseq would build the iterator once and reuse it across epochs.

    A new iterator for epoch ``e > 1`` (a resumed run) is built as in epoch 1 and then set to
    epoch ``e``, which is what the uninterrupted run's reused iterator is at that point.
    Iterators rebuilt every epoch (``--rebuild-batches``, ``--update-epoch-batch-itr``, sharded
    data, a disabled cache) already depend on the epoch alone and are left as they are.
    """
    epoch = kwargs.get("epoch", 1)
    reused = (
        not kwargs.get("disable_iterator_cache", False)
        and not kwargs.get("update_epoch_batch_itr", False)
        and not getattr(task.cfg, "rebuild_batches", False)
        and task.can_reuse_epoch_itr(dataset)
    )
    if epoch <= 1 or not reused or dataset in task.dataset_to_epoch_iter:
        return build(dataset, **kwargs)
    itr = build(dataset, **dict(kwargs, epoch=1))
    itr.epoch = epoch
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return itr


def _should_stop_early():
    """fairseq-train's early-stopping function, when fairseq-train is the running program."""
    import sys

    module = sys.modules.get("fairseq_cli.train")
    return getattr(module, "should_stop_early", None)


def early_stopping_state() -> dict:
    """``{"best": ..., "num_runs": ...}`` of ``--patience`` so far; empty before the first validation."""
    stopper = _should_stop_early()
    if stopper is None or getattr(stopper, "best", None) is None:
        return {}
    return {"best": stopper.best, "num_runs": getattr(stopper, "num_runs", 0)}


PLATEAU_COUNTERS = ("num_bad_epochs", "cooldown_counter")


def exact_plateau_schedule() -> None:
    """Make ``reduce_lr_on_plateau`` resume as it would have gone on (once per process):

    - its saved state also holds torch's counters (checkpoints without them load as before);
    - resuming from an end-of-epoch checkpoint (the iterator at the start of the next epoch, a
      validation loss saved with it) makes the step with that validation that fairseq-train
      made only after saving the checkpoint."""
    from fairseq import checkpoint_utils
    from fairseq.optim.lr_scheduler.reduce_lr_on_plateau import ReduceLROnPlateauLRSchedule as schedule

    if getattr(schedule, "_resumes_exactly", False):
        return
    state_dict, load_state_dict = schedule.state_dict, schedule.load_state_dict
    load_checkpoint = checkpoint_utils.load_checkpoint

    def state_with_counters(self):
        state = state_dict(self)
        state.update({key: getattr(self.lr_scheduler, key) for key in PLATEAU_COUNTERS})
        return state

    def load_with_counters(self, state):
        load_state_dict(self, state)
        for key in PLATEAU_COUNTERS:
            if key in state:
                setattr(self.lr_scheduler, key, state[key])

    def load_and_step(cfg, trainer, **kwargs):
        extra_state, epoch_itr = load_checkpoint(cfg, trainer, **kwargs)
        iterator = (extra_state or {}).get("train_iterator") or {}
        # a run resumed, not one started from another's weights (--finetune-from-model, the
        # --reset-* options: fairseq then restores no update count or no scheduler)
        resumed = trainer.get_num_updates() > 0 and not (
            cfg.reset_optimizer or cfg.reset_lr_scheduler or cfg.reset_dataloader)
        if (resumed and isinstance(trainer.lr_scheduler, schedule) and iterator.get("version", 1) >= 2
                and iterator.get("iterations_in_epoch") == 0 and extra_state.get("val_loss") is not None):
            trainer.lr_step(iterator["epoch"] - 1, extra_state["val_loss"])
        return extra_state, epoch_itr

    schedule.state_dict, schedule.load_state_dict = state_with_counters, load_with_counters
    checkpoint_utils.load_checkpoint = load_and_step
    schedule._resumes_exactly = True


def restore_early_stopping(state: dict) -> None:
    stopper = _should_stop_early()
    if stopper is not None and state.get("best") is not None:
        stopper.best = state["best"]
        stopper.num_runs = int(state.get("num_runs", 0))
