"""Checkpoints that a crash never damages and that a second training never overwrites
(:func:`install_checkpoint_safety`, installed on import of the plugin).

Saving (:func:`install_checkpoint_safety`, installed on import of the plugin). fairseq writes a
checkpoint once, atomically (a ``.tmp`` file renamed), and then copies it in place onto the other
names (``checkpoint_last.pt``, ``checkpoint_best.pt``, the interval copies) with
``shutil.copyfile``: a process killed during that copy left a truncated ``checkpoint_last.pt``, and
the next run of the same command failed on it ("PytorchStreamReader failed reading zip
archive"). Each copy now goes to a hidden temporary file in the same folder, is flushed to disk
and replaces its target with ``os.replace``, so every checkpoint name holds either its old or its
new complete file. ``VARATTN_TEST_PAUSE_IN_COPY=SECONDS`` pauses each copy that replaces an
existing checkpoint halfway for that long (for tests that kill the process there).

Resuming. A resume whose ``checkpoint_last.pt`` is damaged anyway (a disk that filled, a file
truncated by other tools, an older version of the plugin) resumes from the newest intact
checkpoint in ``--save-dir`` and says so; a damaged, empty or foreign file given to ``--path``,
``--restore-file`` or ``--finetune-from-model`` is a :class:`~var_attn_plugin.errors.UsageError`
naming it and the newest intact checkpoint beside it, as are a folder given as a checkpoint and
``-s``/``-t`` the reverse of the checkpoint's direction.

One training per ``--save-dir``. The process that writes the checkpoints holds a lock
(``fcntl.lockf`` on ``varattn-train.lock`` in ``--save-dir``, with its pid, host, start time and
command) for its whole life; a second training with the same ``--save-dir`` stops at start-up
naming the first. The operating system releases the lock when its process ends, however it
ends, so a lock file left by a killed run never blocks.

"""


import datetime
import errno
import functools
import inspect
import json
import logging
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import time
import typing
import zipfile
from typing import Dict, Iterable, Optional, Tuple

from .errors import UsageError

logger = logging.getLogger(__name__)

PAUSE_IN_COPY = "VARATTN_TEST_PAUSE_IN_COPY"
LOCK_NAME = "varattn-train{suffix}.lock"


# ------------------------------------------------------------------ damaged checkpoints


def damage(path: str) -> Optional[str]:
    """Why the file at ``path`` cannot be a complete checkpoint, or None when it may be one.

    Cheap (no unpickling): ``torch.save`` writes a zip archive whose central directory comes
    last, so a file cut short anywhere lacks it. Files of torch's legacy (pre-zip) format are
    not examined.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if size == 0:
        return "it is empty (0 bytes)"
    if head == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return (f"it is damaged (truncated or corrupt: {size} bytes, not a complete zip archive, as left by a "
                    "copy or a save that was cut short)")
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "it is not a checkpoint (a zip archive without the data.pkl of torch.save)"
        return None
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, checked only by loading it
        return None
    return "it is not a checkpoint (it does not begin like a file written by torch.save)"


def _damage_after_failure(path: str, error: BaseException) -> Optional[str]:
    """Why loading ``path`` failed with ``error`` if the file is damaged, else None."""
    if not os.path.isfile(path):
        return None
    reason = damage(path)
    if reason is not None:
        return reason
    text = str(error)
    if "PytorchStreamReader" in text or isinstance(error, (EOFError, zipfile.BadZipFile)):
        return f"it is damaged (truncated or corrupt: torch.load stopped with {type(error).__name__})"
    if (isinstance(error, pickle.UnpicklingError) and "Unsupported global" not in text
            and not zipfile.is_zipfile(path)):
        return "it is damaged or not a checkpoint (torch.load cannot unpickle it)"
    return None


_CHECKPOINT_FILE = re.compile(r"checkpoint.*\.pt")
_OTHER_SHARD = re.compile(r"-(shard\d+|model_part-\d+|rank-\d+)\.pt$")


def newest_intact_checkpoint(folder: str, suffix: str = "", exclude: Iterable[str] = ()) -> Optional[str]:
    """The most recently written ``checkpoint*.pt`` in ``folder`` (with fairseq's checkpoint
    ``suffix``) in which :func:`damage` finds no fault; ``crash.pt`` and ``exclude`` left out."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    excluded = {os.path.abspath(p) for p in exclude}
    found = []
    for name in names:
        if not _CHECKPOINT_FILE.fullmatch(name) or not name.endswith(f"{suffix}.pt"):
            continue
        if not suffix and _OTHER_SHARD.search(name):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.abspath(path) in excluded or not os.path.isfile(path):
                continue
            found.append((os.path.getmtime(path), path))
        except OSError:
            continue
    for _, path in sorted(found, reverse=True):
        if damage(path) is None:
            return path
    return None


def _saved_at(path: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))
    except OSError:
        return "?"


_CHECKPOINT_FLAGS = ("--path", "--restore-file", "--finetune-from-model", "--continue-once")


def _flag_for(path: str) -> Optional[str]:
    """The command-line flag that named ``path`` (``--path`` may name several, ``:``-separated)."""
    target = os.path.abspath(path)
    argv = sys.argv[1:]
    for k, arg in enumerate(argv):
        for flag in _CHECKPOINT_FLAGS:
            if arg == flag and k + 1 < len(argv):
                value = argv[k + 1]
            elif arg.startswith(flag + "="):
                value = arg[len(flag) + 1:]
            else:
                continue
            if any(os.path.abspath(p) == target for p in value.split(os.pathsep) if p):
                return flag
    return None


def damaged_checkpoint_message(path: str, reason: str, suffix: str = "") -> str:
    """One line: which file, why it cannot be loaded, and the newest intact checkpoint beside it."""
    flag = _flag_for(path)
    folder = os.path.dirname(os.path.abspath(path))
    intact = newest_intact_checkpoint(folder, suffix, exclude=[path])
    if intact is not None:
        use = flag or ("--restore-file" if os.path.basename(path).startswith("checkpoint_last") else None)
        how = f"pass {use} {intact}" if use else f"load {intact} instead"
        fix = f"the newest intact checkpoint beside it is {intact} (written {_saved_at(intact)}): {how}"
    else:
        fix = f"there is no intact checkpoint beside it in {folder}: give another checkpoint, or train again"
    return f"{flag or 'checkpoint'} {path} cannot be loaded: {reason}; {fix}"


def _refuse_folder(path: str) -> None:
    flag = _flag_for(path) or "checkpoint"
    try:
        inside = sorted(name for name in os.listdir(path) if _CHECKPOINT_FILE.fullmatch(name))
    except OSError:
        inside = []
    preferred = [name for name in ("checkpoint_best.pt", "checkpoint_last.pt") if name in inside]
    example = (preferred or inside or [None])[0]
    if example is None:
        raise UsageError(f"{flag} {path} is a folder, not a checkpoint file, and holds no checkpoint*.pt: "
                         "name a checkpoint file (e.g. checkpoint_best.pt in a training's --save-dir)")
    shown = ", ".join(inside[:6]) + (", ..." if len(inside) > 6 else "")
    raise UsageError(f"{flag} {path} is a folder, not a checkpoint file (it holds {shown}): name the file, "
                     f"e.g. {flag} {os.path.join(path, example)}")


# ------------------------------------------------------------------ the direction of a checkpoint


_FINGERPRINTS: Dict[str, Tuple[int, int]] = {}  # checkpoint path -> its (source, target) dictionaries' fingerprints
_LAST_LOADED: list = [None]


def _fingerprints_of(state) -> Optional[Tuple[int, int]]:
    """The fingerprints of the dictionaries a checkpoint of this plugin was trained with."""
    try:
        saved = state["model"]["dictionary_fingerprint"]
        return int(saved[0]), int(saved[1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def check_direction(task, path: Optional[str]) -> None:
    """Refuse ``-s``/``-t`` that are the reverse of the direction the checkpoint at ``path`` was
    trained in: the task's source dictionary is the checkpoint's target dictionary and the other
    way round (the checkpoint's configuration does not name the languages fairseq inferred)."""
    if task is None or path is None:
        return
    saved = _FINGERPRINTS.get(os.path.abspath(path))
    source_dictionary = getattr(task, "source_dictionary", None)
    target_dictionary = getattr(task, "target_dictionary", None)
    if saved is None or source_dictionary is None or target_dictionary is None or saved[0] == saved[1]:
        return
    from .model import dictionary_fingerprint

    if (dictionary_fingerprint(source_dictionary), dictionary_fingerprint(target_dictionary)) != (saved[1], saved[0]):
        return
    cfg = getattr(task, "cfg", None)
    source, target = getattr(cfg, "source_lang", None) or "?", getattr(cfg, "target_lang", None) or "?"
    flag = _flag_for(path) or "checkpoint"
    raise UsageError(
        f"-s {source} -t {target} is the reverse of the direction {flag} {path} was trained in: its source "
        f"dictionary is this data-bin's dict.{target}.txt and its target dictionary dict.{source}.txt; pass "
        f"-s {target} -t {source}")


# ------------------------------------------------------------------ atomic copies


def _pause_in_copy(dst: str) -> float:
    value = os.environ.get(PAUSE_IN_COPY)
    if not value or not os.path.exists(dst):
        return 0.0
    try:
        return float(value)
    except ValueError:
        return 0.0


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` onto ``dst`` so that ``dst`` is at every moment either its old or its new
    complete file: a hidden temporary file in ``dst``'s folder, flushed to disk, then ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            pause = _pause_in_copy(dst)
            if pause:
                out.write(source.read(os.fstat(source.fileno()).st_size // 2))
                out.flush()
                sys.stderr.write(f"{PAUSE_IN_COPY}: pausing {pause:g} s halfway through copying {src} to {dst}\n")
                sys.stderr.flush()
                time.sleep(pause)
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _atomic_copy_path_manager(base):
    """fairseq's ``PathManager`` whose ``copy`` of local files is :func:`atomic_copy`."""

    class AtomicCopyPathManager(base):
        varattn_atomic_copy = True

        @staticmethod
        def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
            if (base.path_requires_pathmanager(src_path) or base.path_requires_pathmanager(dst_path)
                    or (not overwrite and os.path.exists(dst_path))):
                return base.copy(src_path, dst_path, overwrite=overwrite)
            atomic_copy(src_path, dst_path)
            return True

    return AtomicCopyPathManager


_TEMPORARY_FILES = (re.compile(r"\.checkpoint.*\.pt\.\w+\.tmp"),  # atomic_copy's
                    re.compile(r"(checkpoint.*|crash)\.pt\.tmp"))  # fairseq's torch_persistent_save


def remove_temporary_files(save_dir: str) -> None:
    """Remove the temporary files of saves and copies that a killed process left in ``save_dir``
    (only while this process holds the lock of ``save_dir``: no other training writes there)."""
    try:
        names = os.listdir(save_dir)
    except OSError:
        return
    removed = []
    for name in names:
        if any(pattern.fullmatch(name) for pattern in _TEMPORARY_FILES):
            try:
                os.remove(os.path.join(save_dir, name))
                removed.append(name)
            except OSError:
                pass
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted checkpoint save from %s: %s",
                    len(removed), save_dir, ", ".join(sorted(removed)))


# ------------------------------------------------------------------ one training per --save-dir


_HELD_LOCKS: Dict[str, typing.IO] = {}


def _describe_holder(text: str, path: str) -> str:
    try:
        info = json.loads(text)
        command = str(info.get("command", ""))
        command = command if len(command) <= 300 else command[:300] + " ..."
        return f"pid {info['pid']} on host {info['host']}, started {info['started']} (command: {command})"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"a process that holds the lock {path} (it has not written its details yet)"


def lock_save_dir(save_dir: str, suffix: str = "") -> Optional[str]:
    """Hold the lock of ``save_dir`` until this process ends, or raise a UsageError naming the
    training that holds it. Returns the lock file's path (None where locks are unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        return None
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, LOCK_NAME.format(suffix=suffix))
    key = os.path.realpath(path)
    if key in _HELD_LOCKS:
        return path
    handle = open(path, "a+", encoding="utf-8")
    try:
        # a POSIX record lock: held by this process only (not by the data loaders it forks),
        # released by the system when the process ends, however it ends
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
            handle.close()
            logger.warning("cannot lock --save-dir %s (%s): nothing keeps a second training from writing "
                           "into it at the same time", save_dir, e.strerror)
            return None
        handle.seek(0)
        holder = _describe_holder(handle.read(), path)
        handle.close()
        raise UsageError(
            f"--save-dir {save_dir} is in use by another training: {holder}. Two trainings writing into one "
            "--save-dir overwrite each other's checkpoints: wait for that one to end (or stop it), or give "
            "this one another --save-dir") from None
    handle.seek(0)
    handle.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(),
               "started": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
               "command": " ".join(sys.argv)}, handle)
    handle.write("\n")
    handle.flush()
    _HELD_LOCKS[key] = handle
    logger.info("locked --save-dir %s for this training (pid %d, lock file %s)", save_dir, os.getpid(), path)
    return path


# ------------------------------------------------------------------ fairseq's checkpoint functions, wrapped


def _writes_checkpoints(trainer) -> bool:
    try:
        return bool(trainer.should_save_checkpoint_on_current_rank)
    except Exception:
        return getattr(trainer, "data_parallel_rank", 0) == 0


class _Overridden:
    """Set attributes of an omegaconf (or plain) config for the duration of a ``with``."""

    def __init__(self, cfg, **values):
        self.cfg, self.values, self.saved = cfg, values, {}

    def _set(self, values):
        try:
            from omegaconf import DictConfig, open_dict
        except ImportError:  # pragma: no cover
            DictConfig = None
        if DictConfig is not None and isinstance(self.cfg, DictConfig):
            with open_dict(self.cfg):
                for key, value in values.items():
                    setattr(self.cfg, key, value)
        else:
            for key, value in values.items():
                setattr(self.cfg, key, value)

    def __enter__(self):
        self.saved = {key: getattr(self.cfg, key, None) for key in self.values}
        self._set(self.values)
        return self.cfg

    def __exit__(self, *exc):
        self._set(self.saved)
        return False


def _resume_fallback(cfg, suffix: str) -> Optional[str]:
    """The checkpoint to resume from instead of a damaged ``checkpoint_last.pt``, or None."""
    if getattr(cfg, "restore_file", None) != "checkpoint_last.pt":
        return None
    last = os.path.join(cfg.save_dir, f"checkpoint_last{suffix}.pt")
    if not os.path.isfile(last):
        _warn_unused_checkpoints(cfg, suffix)
        return None
    reason = damage(last)
    if reason is None:
        return None
    intact = newest_intact_checkpoint(cfg.save_dir, suffix, exclude=[last])
    if intact is None:
        raise UsageError(
            f"{last} cannot be resumed from: {reason}; --save-dir {cfg.save_dir} holds no intact checkpoint "
            "either: move the damaged file away to train from the start, or pass --restore-file with a "
            "checkpoint from elsewhere")
    logger.warning(
        "%s cannot be resumed from: %s. Resuming from the newest intact checkpoint in --save-dir instead: %s "
        "(written %s); the damaged file is replaced at the next save. Pass --restore-file to resume from "
        "another checkpoint.", last, reason, intact, _saved_at(intact))
    return intact


def _warn_unused_checkpoints(cfg, suffix: str) -> None:
    if (getattr(cfg, "no_last_checkpoints", False) or getattr(cfg, "finetune_from_model", None)
            or getattr(cfg, "continue_once", None)):
        return
    intact = newest_intact_checkpoint(cfg.save_dir, suffix)
    if intact is not None:
        logger.warning(
            "--save-dir %s has no checkpoint_last%s.pt but holds other checkpoints (the newest: %s, written %s): "
            "this run starts from the beginning and will overwrite them; to continue from it instead, pass "
            "--restore-file %s", cfg.save_dir, suffix, intact, _saved_at(intact), intact)


def _safe_load_checkpoint(original):
    """fairseq-train's ``load_checkpoint(cfg.checkpoint, trainer)``: lock ``--save-dir``, clear
    the temporary files of an interrupted save, and resume past a damaged checkpoint_last.pt."""

    @functools.wraps(original)
    def load_checkpoint(cfg, trainer, **passthrough_args):
        suffix = getattr(trainer, "checkpoint_suffix", "") or ""
        if not getattr(cfg, "no_save", False) and _writes_checkpoints(trainer) and "://" not in str(cfg.save_dir):
            if lock_save_dir(cfg.save_dir, suffix) is not None:
                remove_temporary_files(cfg.save_dir)
        fallback = _resume_fallback(cfg, suffix)
        _LAST_LOADED[0] = None
        try:
            if fallback is None:
                return original(cfg, trainer, **passthrough_args)
            with _Overridden(cfg, restore_file=fallback, finetune_from_model=None):
                return original(cfg, trainer, **passthrough_args)
        except Exception:  # the dictionaries' mismatch of reversed -s/-t is named as such
            check_direction(getattr(trainer, "task", None), _LAST_LOADED[0])
            raise

    return load_checkpoint


def _checked_load_checkpoint_to_cpu(original):
    """``load_checkpoint_to_cpu(path, ...)``, every load of a checkpoint file: a folder or a
    damaged file is a UsageError; remembers the dictionaries each checkpoint was trained with."""

    @functools.wraps(original)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
            _refuse_folder(os.fspath(path))
        try:
            state = original(path, *args, **kwargs)
        except UsageError:
            raise
        except Exception as error:
            reason = _damage_after_failure(os.fspath(path), error) if isinstance(path, (str, os.PathLike)) else None
            if reason is None:
                raise
            raise UsageError(damaged_checkpoint_message(os.fspath(path), reason)) from error
        if isinstance(path, (str, os.PathLike)):
            fingerprints = _fingerprints_of(state)
            if fingerprints is not None:
                _FINGERPRINTS[os.path.abspath(path)] = fingerprints
            _LAST_LOADED[0] = os.fspath(path)
        return state

    return load_checkpoint_to_cpu


def _checked_load_model_ensemble_and_task(original):
    """Loading models for generation, validation, the hub: ``-s``/``-t`` the reverse of the checkpoint's."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def load_model_ensemble_and_task(*args, **kwargs):
        try:
            arguments = signature.bind(*args, **kwargs).arguments
        except TypeError:
            arguments = {}
        task, filenames = arguments.get("task"), list(arguments.get("filenames") or [])
        try:
            result = original(*args, **kwargs)
        except Exception:  # the dictionaries' mismatch of reversed -s/-t is named as such
            for filename in filenames:
                check_direction(task, filename)
            raise
        for filename in filenames:
            check_direction(task, filename)
        return result

    return load_model_ensemble_and_task


def _checked_verify_checkpoint_directory(original):
    """fairseq-train's first use of ``--save-dir``: a file there, or a folder it cannot create, is a UsageError."""

    @functools.wraps(original)
    def verify_checkpoint_directory(save_dir: str) -> None:
        if os.path.exists(save_dir) and not os.path.isdir(save_dir):
            raise UsageError(f"--save-dir {save_dir} is a file, not a folder: checkpoints are written into a "
                             "folder; pass the folder to write them into (it is created if missing)")
        try:
            return original(save_dir)
        except OSError as e:
            raise UsageError(f"--save-dir {save_dir} cannot be used: {e.strerror or e} ({e.filename or save_dir}); "
                             "pass a folder this user can create and write into") from e

    return verify_checkpoint_directory


def install_checkpoint_safety() -> None:
    """Wrap fairseq's checkpoint functions (idempotent): atomic copies, one training per
    ``--save-dir``, and clear errors for damaged checkpoints, folders and reversed ``-s``/``-t``."""
    from fairseq import checkpoint_utils

    if getattr(checkpoint_utils, "varattn_checkpoint_safety", False):
        return
    checkpoint_utils.PathManager = _atomic_copy_path_manager(checkpoint_utils.PathManager)
    checkpoint_utils.load_checkpoint = _safe_load_checkpoint(checkpoint_utils.load_checkpoint)
    checkpoint_utils.load_checkpoint_to_cpu = _checked_load_checkpoint_to_cpu(checkpoint_utils.load_checkpoint_to_cpu)
    checkpoint_utils.load_model_ensemble_and_task = _checked_load_model_ensemble_and_task(
        checkpoint_utils.load_model_ensemble_and_task)
    checkpoint_utils.verify_checkpoint_directory = _checked_verify_checkpoint_directory(
        checkpoint_utils.verify_checkpoint_directory)
    checkpoint_utils.varattn_checkpoint_safety = True
