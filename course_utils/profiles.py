"""Run profiles, seeds and the compute device — set in one place for every lesson.

A *profile* decides how much a lesson runs, never what it runs:

* ``full`` (the default) is what a learner runs: real epochs on the whole dataset.
* ``smoke`` is what CI runs: tiny subsets and one epoch, through the same code.

The profile comes from the environment variable ``COURSE_PROFILE``. A lesson states its
budgets in one visible line, for example ``EPOCHS = budget(full=15, smoke=1)``.

``setup()`` is the one call at the top of every lesson: it seeds every random number
generator, fixes the number of CPU threads, tunes the memory allocator and picks the device.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
from typing import TypeVar

import numpy as np

PROFILE_VARIABLE = "COURSE_PROFILE"
PROFILES = ("full", "smoke")
SEED_VARIABLE = "COURSE_SEED"
#: The seed of a lesson's headline run; other seeds measure how much a result varies.
DEFAULT_SEED = 0
_active_seed: int | None = None

T = TypeVar("T")


def current_profile() -> str:
    """Return the active profile name, ``"full"`` unless ``COURSE_PROFILE`` says otherwise."""
    name = os.environ.get(PROFILE_VARIABLE, "full").strip().lower() or "full"
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_VARIABLE}={name!r} is not a profile; use one of {', '.join(PROFILES)}."
        )
    return name


def is_smoke() -> bool:
    """True when running in the small CI profile."""
    return current_profile() == "smoke"


def budget(*, full: T, smoke: T) -> T:
    """Pick a budget (epochs, subset size, ...) for the active profile.

    >>> EPOCHS = budget(full=15, smoke=1)
    """
    return smoke if is_smoke() else full


# glibc's malloc hands large buffers straight back to the operating system after every
# training step; on a CPU the page faults that follow can halve the speed of a network.
# These mallopt() settings keep freed memory in the process for reuse instead.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_tuned = False


def tune_allocator() -> bool:
    """Ask glibc malloc to keep large freed buffers for reuse. Returns True if applied.

    Harmless elsewhere: on macOS, Windows or musl it does nothing and returns False.
    The speed-up is measured in ``scripts/benchmark_allocator.py``.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("COURSE_DEFAULT_ALLOCATOR"):
        return False
    path = ctypes.util.find_library("c")
    if not path:
        return False
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    _allocator_tuned = ok
    return ok


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def current_seed() -> int:
    """The seed a lesson runs with: ``COURSE_SEED`` if set, else ``DEFAULT_SEED`` (0).

    ``COURSE_SEED=1 jupyter nbconvert --execute ...`` re-runs a lesson with another seed
    without editing it; results recorded by that run go to the lesson's spread, not its
    headline (see ``course_utils.results.record``).
    """
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return DEFAULT_SEED
    try:
        seed = int(text)
    except ValueError:
        raise ValueError(
            f"{SEED_VARIABLE}={text!r} is not a seed; use a whole number >= 0, e.g. "
            f"{SEED_VARIABLE}=1, or unset it for the lesson's own seed {DEFAULT_SEED}."
        ) from None
    if seed < 0:
        raise ValueError(f"{SEED_VARIABLE}={seed} is negative; use a whole number >= 0.")
    return seed


def active_seed() -> int:
    """The seed the last ``setup()`` used (``current_seed()`` if ``setup`` has not run)."""
    return current_seed() if _active_seed is None else _active_seed


def choose_device(prefer: str | None = None) -> "torch.device":
    """Return ``cuda`` if available, else Apple's ``mps``, else ``cpu``.

    ``prefer`` (or the environment variable ``COURSE_DEVICE``) forces a device by name.
    """
    import torch

    name = prefer or os.environ.get("COURSE_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup(seed: int | None = None, threads: int | None = None, verbose: bool = True) -> "torch.device":
    """The one call at the top of a lesson: seeds, threads, allocator, device.

    ``seed`` defaults to ``current_seed()`` (``COURSE_SEED``, else 0). Returns the device to
    train on. With the same seed, profile and device, a lesson gives the same numbers on every
    run on one machine; another CPU model can round differently and end a few test images apart.
    """
    import torch

    global _active_seed
    if seed is None:
        seed = current_seed()
    _active_seed = seed

    tune_allocator()
    if threads is None:
        threads = int(os.environ.get("COURSE_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    seed_everything(seed)
    device = choose_device()
    if verbose:
        print(f"profile={current_profile()}  device={device}  threads={threads}  seed={seed}")
    return device
