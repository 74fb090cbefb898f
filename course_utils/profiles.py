"""Run profiles, seeds and the compute device — set in one place for every lesson.

A *profile* decides how much a lesson runs, never what it runs:

* ``full`` (the default) is what a learner runs: real epochs on the whole dataset.
* ``smoke`` is what CI runs: tiny subsets and one epoch, through the same code.

The profile comes from the environment variable ``COURSE_PROFILE``. A lesson states its
budgets in one visible line, for example ``EPOCHS = budget(full=15, smoke=1)``.

The *split* a lesson trains and scores on is the course's grouped split (no copy or
neighbouring slice on two sides of a boundary) unless ``COURSE_SPLIT=official`` asks for the
dataset's own ``Training/`` / ``Testing/`` folders, to compare with published figures
(``current_split``).

``setup()`` is the one call at the top of every lesson: it seeds every random number
generator, fixes the number of CPU threads, tunes the memory allocator and picks the device.

It also checks how PyTorch's CPU threads wait for work (OpenMP's *wait policy*, see
``openmp_environment``). That setting is read once, when PyTorch loads, so the course puts it
into the environment earlier: ``make lab`` starts Jupyter with it, and importing any
``course_utils`` module before ``torch`` sets it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import sys
import time
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import figure_style

PROFILE_VARIABLE = "COURSE_PROFILE"
PROFILES = ("full", "smoke")
SEED_VARIABLE = "COURSE_SEED"
#: The seed of a lesson's headline run; other seeds measure how much a result varies.
DEFAULT_SEED = 0
_active_seed: int | None = None

SPLIT_VARIABLE = "COURSE_SPLIT"
#: ``grouped``: the course's benchmark (``course_utils/data/GROUPED_SPLIT.md``); ``official``:
#: the dataset's ``Training/`` folder (15 % of it for validation) and its ``Testing/`` folder.
SPLIT_CHOICES = ("grouped", "official")

T = TypeVar("T")


def current_profile() -> str:
    """Return the active profile name, ``"full"`` unless ``COURSE_PROFILE`` says otherwise."""
    name = os.environ.get(PROFILE_VARIABLE, "full").strip().lower() or "full"
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_VARIABLE}={name!r} is not a profile; use one of {', '.join(PROFILES)}."
        )
    return name


def current_split() -> str:
    """The split lessons train and score on: ``"grouped"`` unless ``COURSE_SPLIT`` says otherwise.

    ``COURSE_SPLIT=official`` re-runs a lesson on the dataset's official folders, whose test
    images are mostly copies of training images: the numbers it gives are comparable with
    published ones and inflated (lesson 13 measures by how much).
    """
    name = os.environ.get(SPLIT_VARIABLE, "grouped").strip().lower() or "grouped"
    if name not in SPLIT_CHOICES:
        raise ValueError(f"{SPLIT_VARIABLE}={name!r} is not a split; use one of {', '.join(SPLIT_CHOICES)}.")
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


# OpenMP's worker threads wait for the next parallel region by spinning on their core for a
# while (libgomp: about 300 000 spins, a few milliseconds) before they sleep. On an idle
# computer that saves a wake-up; when another program holds one of the cores, the spinning
# threads take CPU time from the very thread everyone waits for, and training runs at a third
# of its idle speed. Sleeping at once (passive) keeps more than half under load but costs
# about 10 % when idle, so the course looks before it chooses. ``scripts/benchmark_under_load.py``
# measures all of it.
OMP_WAIT_VARIABLE = "COURSE_OMP_WAIT"
#: The course's choice: ``auto`` looks how busy the computer is when the course is imported.
COURSE_OMP_WAIT = "auto"
#: ``auto`` makes threads sleep (passive) when other programs keep this many cores busy.
BUSY_CORES = 0.5
#: How long ``auto`` watches the computer (seconds).
SAMPLE_SECONDS = 0.2
#: The OpenMP runtime's own variables: set by hand, they win over the course's choice.
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_openmp_policy_set: dict[str, str] | None = None  # what this process put into its environment
_openmp_decision: str | None = None  # one line saying what was chosen and why (``setup()`` prints it)


def wait_choice(value: str | None = None) -> str:
    """The ``COURSE_OMP_WAIT`` value (``value``, else the environment's), checked and lower-cased."""
    raw = os.environ.get(OMP_WAIT_VARIABLE, "") if value is None else value
    name = raw.strip().lower() or COURSE_OMP_WAIT
    if name in ("auto", "default", "passive", "active") or name.isdigit():
        return name
    raise ValueError(f"{OMP_WAIT_VARIABLE}={raw!r} is not a wait policy; use auto (the course's choice), "
                     f"passive, active, default, or a number of spins such as 10000.")


def openmp_environment(value: str | None = None, busy: float | None = None) -> dict[str, str]:
    """The OpenMP environment variables for a ``COURSE_OMP_WAIT`` value.

    ``passive``: idle threads sleep at once; ``active``: they spin until there is work;
    ``default``: the runtime's own behaviour (spin a few milliseconds, then sleep); a whole
    number: spin that many times, then sleep. ``auto`` (the course's choice when unset) is
    ``passive`` when ``busy`` (cores other programs keep busy, see ``busy_cores``) reaches
    ``BUSY_CORES``, else ``default``. The policy never changes the numbers a run computes,
    only how fast it runs.
    """
    name = wait_choice(value)
    if name == "auto":
        name = "passive" if busy is not None and busy >= BUSY_CORES else "default"
    if name == "default":
        return {}
    if name in ("passive", "active"):
        return {"OMP_WAIT_POLICY": name.upper()}
    return {"GOMP_SPINCOUNT": name}


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores other programs keep busy, watched for ``seconds`` (None where unknown).

    Adds up the CPU time of every other process (``/proc/<pid>/stat``, Linux) before and after
    a short sleep. The kernel's own threads and time taken by other virtual machines are left
    out: they are not programs a learner runs beside a lesson. Load that starts later is not seen.
    """
    try:
        before, began = _cpu_ticks(), time.monotonic()
        time.sleep(seconds)
        after, ended = _cpu_ticks(), time.monotonic()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / hz / max(ended - began, 1e-3)


_PF_KTHREAD = 0x00200000  # the flag of a kernel thread in /proc/<pid>/stat


def _cpu_ticks() -> dict[int, int]:
    """CPU time (user + system, in clock ticks) of every process but this one and the kernel's threads."""
    ticks, me = {}, os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:  # the process has just ended
            continue
        fields = text[text.rindex(")") + 2:].split()  # fields from the 3rd on (the name may hold spaces)
        if not int(fields[6]) & _PF_KTHREAD:
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def openmp_started() -> bool:
    """True once PyTorch (and with it the OpenMP runtime, which reads its settings then) is loaded."""
    if "torch" in sys.modules:
        return True
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "/libgomp.so" in maps


def _planned_threads() -> int:
    """The threads ``setup()`` will use unless told otherwise (``COURSE_THREADS``, else every core)."""
    try:
        return threads_from_env()
    except ValueError:
        return os.cpu_count() or 1  # setup() reports the bad value


def apply_openmp_policy() -> dict[str, str]:
    """Put the course's OpenMP wait policy into this process's environment, if it still counts.

    With ``auto`` it first watches the computer for ``SAMPLE_SECONDS`` (``busy_cores``), unless
    training will use one thread (one thread never waits for another). Does nothing when the
    OpenMP variables are already set (by the learner, or by ``make lab``), or when PyTorch is
    already loaded (too late: ``setup()`` then says so if it matters). Returns the variables it
    set and keeps a line saying why (``openmp_decision``). Importing any ``course_utils``
    module calls it.
    """
    global _openmp_policy_set, _openmp_decision
    if any(name in os.environ for name in OPENMP_VARIABLES) or openmp_started():
        return {}
    name = wait_choice()
    if name == "auto" and _planned_threads() <= 1:
        return {}
    busy = busy_cores() if name == "auto" else None
    wanted = openmp_environment(name, busy)
    os.environ.update(wanted)
    _openmp_policy_set = wanted
    _openmp_decision = _describe(name, wanted, busy)
    return wanted


def _describe(name: str, wanted: dict[str, str], busy: float | None) -> str:
    setting = " ".join(f"{k}={v}" for k, v in wanted.items()) or "PyTorch's default"
    if name != "auto":
        return f"OpenMP waits with {setting} ({OMP_WAIT_VARIABLE}={name})."
    seen = "unknown" if busy is None else f"{busy:.1f}"
    if wanted:
        return (f"OpenMP threads sleep while they wait ({setting}): other programs kept {seen} cores busy "
                f"when the course started ({OMP_WAIT_VARIABLE}=auto).")
    return (f"OpenMP threads spin briefly while they wait (PyTorch's default): other programs kept {seen} cores "
            f"busy when the course started ({OMP_WAIT_VARIABLE}=auto; restart if the computer gets busy).")


def openmp_decision() -> str | None:
    """The line saying which wait policy this process chose at import and why (None if it chose none)."""
    return _openmp_decision


def openmp_exports() -> str:
    """The course's OpenMP variables as ``NAME=value`` words for a shell (``make lab`` starts
    Jupyter with them). Empty for ``auto`` (every kernel looks for itself when it imports the
    course) and when the OpenMP variables are already set by hand."""
    if any(name in os.environ for name in OPENMP_VARIABLES) and _openmp_policy_set is None:
        return ""
    name = wait_choice()
    if name == "auto":
        return ""
    return " ".join(f"{k}={v}" for k, v in openmp_environment(name).items())


def spinning_by_omission() -> bool:
    """True when PyTorch's threads spin only because ``auto`` chose (or could not choose) the default."""
    return wait_choice() == "auto" and not any(name in os.environ for name in OPENMP_VARIABLES)


def openmp_policy_note(busy: float | None = None) -> str | None:
    """None if OpenMP runs with a sensible wait policy; else what is wrong and how to fix it.

    ``busy``: cores other programs keep busy now (``busy_cores()``); with ``auto`` a note is
    due only when they do and PyTorch's threads were started spinning.
    """
    name = wait_choice()
    if name == "auto":
        if not spinning_by_omission() or busy is None or busy < BUSY_CORES:
            return None
        when = "while the computer was idle" if _openmp_decision else "before the course could choose"
        return (f"other programs keep {busy:.1f} cores busy, but PyTorch's threads were started {when} and spin "
                f"while they wait, which can slow training to a third. Restart the kernel (or Python) so that the "
                f"course chooses again when it starts (`make lab` makes every kernel do so), or start Jupyter "
                f"with {OMP_WAIT_VARIABLE}=passive.")
    wanted = openmp_environment(name)
    if any(var in os.environ for var in OPENMP_VARIABLES) or not wanted:
        return None  # set by hand, by make lab, before PyTorch loaded; or the runtime's default asked for
    if _openmp_policy_set == wanted:
        return None
    setting = " ".join(f"{k}={v}" for k, v in wanted.items())
    return (f"PyTorch was loaded before the course could set {setting}, so its threads keep spinning while they "
            f"wait: another busy program can then slow training down to less than half. Start Jupyter with "
            f"`make lab`, or start Python with {setting} in the environment "
            f"({OMP_WAIT_VARIABLE}=default keeps PyTorch's own behaviour and silences this note).")


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


THREADS_VARIABLE = "COURSE_THREADS"


def threads_from_env(default: int | None = None) -> int:
    """CPU threads from ``COURSE_THREADS``: a whole number ≥ 1; unset, empty or 0 means
    ``default`` (every core unless given).

    Anything else (``two``, ``-1``, ``1.5``) is a ``ValueError`` that names the variable and
    what it accepts, rather than ``int()``'s bare "invalid literal".
    """
    cores = os.cpu_count() or 1
    text = os.environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return default or cores
    try:
        threads = int(text)
    except ValueError:
        threads = -1
    if threads < 0:
        raise ValueError(f"{THREADS_VARIABLE}={text!r} is not a number of threads; use a whole number "
                         f"such as {THREADS_VARIABLE}=2 (this machine has {cores} cores), "
                         f"or unset it to use every core.")
    return threads or default or cores


def _report_openmp() -> None:
    """Print the wait policy chosen at import, and a note if it does not fit the computer now."""
    if _openmp_decision:
        print(_openmp_decision)
    busy = busy_cores() if spinning_by_omission() else None
    note = openmp_policy_note(busy)
    if note:
        print(f"Note: {note}")


def setup(seed: int | None = None, threads: int | None = None, verbose: bool = True) -> "torch.device":
    """The one call at the top of a lesson: seeds, threads, allocator, figure style, device.

    ``seed`` defaults to ``current_seed()`` (``COURSE_SEED``, else 0). Returns the device to
    train on. With the same seed, profile and device, a lesson gives the same numbers on every
    run on one machine; another CPU model can round differently and end a few test images apart.
    With more than one thread it prints the OpenMP wait policy chosen at import and why
    (``openmp_decision``), and a note if it no longer fits: other programs are busy now but
    PyTorch's threads spin, or PyTorch was loaded too early for the policy asked for
    (``openmp_policy_note``).
    """
    import torch

    global _active_seed
    if seed is None:
        seed = current_seed()
    _active_seed = seed

    tune_allocator()
    if threads is None:
        threads = threads_from_env()
    torch.set_num_threads(threads)
    if threads > 1 and verbose:  # one thread never waits for another
        _report_openmp()
    seed_everything(seed)
    figure_style.apply()  # figure sizes and type for the book's column (course_utils.figure_style)
    device = choose_device()
    if verbose:
        print(f"profile={current_profile()}  device={device}  threads={threads}  seed={seed}")
    return device
