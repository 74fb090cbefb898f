"""Training speed: the machine a speed was measured on, recorded speeds, a slow-run check.

* ``machine`` says where a speed was measured: CPU model, instruction set, threads, torch.
* ``results/speed.json`` keeps the recorded training speed of each lesson's main run (keyed
  by its checkpoint name) per machine. ``SpeedWatch`` compares a running epoch with it and
  says once when training runs far below it: usually another program is using the CPU.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from .profiles import spinning_by_omission

SPEED_JSON = Path(__file__).resolve().parent.parent / "results" / "speed.json"
#: Below this fraction of the recorded speed, a run says that it is slow.
SLOW_FRACTION = 0.5


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict:
    """Where a speed is measured: CPU model, instruction set PyTorch uses, threads, torch."""
    return {"cpu": cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__.split("+")[0]}


def machine_line(info: dict | None = None) -> str:
    """``machine()`` as one line, e.g. ``AMD EPYC, AVX512, 2 threads, torch 2.14.1``."""
    info = info or machine()
    return f"{info['cpu']}, {info['isa']}, {info['threads']} threads, torch {info['torch']}"


def same_machine(a: dict, b: dict) -> bool:
    """Speeds are comparable on the same CPU model, instruction set and number of threads."""
    return all(a.get(k) == b.get(k) for k in ("cpu", "isa", "threads"))


def load_speeds(path: Path | None = None) -> dict:
    path = Path(path or SPEED_JSON)
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_speed(key: str, info: dict | None = None, path: Path | None = None) -> float | None:
    """The recorded images/s of run ``key`` on this kind of machine, or None if there is none."""
    info = info or machine()
    rows = load_speeds(path).get(key, [])
    speeds = [row["images_per_second"] for row in rows if same_machine(row["machine"], info)]
    return max(speeds) if speeds else None


def record_speed(key: str, images_per_second: float, source: str, info: dict | None = None,
                 path: Path | None = None) -> bool:
    """Keep ``images_per_second`` as run ``key``'s speed on this machine if it is the fastest yet.

    One row per machine: a slower run (a busy computer) never replaces a faster one.
    ``source`` says what measured it. Returns True if the file was written.
    """
    path, info = Path(path or SPEED_JSON), info or machine()
    table = load_speeds(path)
    rows = table.setdefault(key, [])
    old = [row for row in rows if same_machine(row["machine"], info)]
    if old and old[0]["images_per_second"] >= images_per_second:
        return False
    rows[:] = [row for row in rows if row not in old] + [{
        "images_per_second": round(float(images_per_second), 1), "machine": info,
        "source": source, "date": time.strftime("%Y-%m-%d")}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    return True


_warned: set[str] = set()


class SpeedWatch:
    """Says once (per run ``key`` and process) when training runs far below its usual speed.

    The usual speed is the larger of the recorded one (``recorded_speed``, same machine) and
    the fastest epoch of this run so far: a run slowed from its start and one slowed half-way
    are both caught. ``check`` returns the message the first time it applies, else None.
    """

    def __init__(self, key: str, reference: float | None = None, fraction: float = SLOW_FRACTION):
        self.key, self.reference, self.fraction = key, reference, fraction
        self.fastest = 0.0

    def check(self, images_per_second: float) -> str | None:
        usual = max(self.reference or 0.0, self.fastest)
        self.fastest = max(self.fastest, images_per_second)
        if self.key in _warned or usual <= 0 or images_per_second >= self.fraction * usual:
            return None
        _warned.add(self.key)
        source = "recorded on this machine" if self.reference and usual == self.reference else "its fastest epoch"
        return (f"training at {100 * images_per_second / usual:.0f} % of the usual speed ({images_per_second:.0f} "
                f"images/s; usual: {usual:.0f}, {source}): is another program using the CPU?{restart_hint()}")


def restart_hint() -> str:
    """What to add to the slow-run note when PyTorch's threads spin while they wait.

    The course chooses the wait policy when the kernel starts (``profiles.apply_openmp_policy``);
    load that began later was not seen, and a restarted kernel would choose sleeping threads.
    """
    if not spinning_by_omission():
        return ""
    return (" If it is, restart the kernel: the course then sees the busy computer and makes PyTorch's threads "
            "sleep instead of spinning while they wait (README, \"Speed on a CPU\").")


def reset_warnings() -> None:
    """Forget which runs have already warned (for tests and long sessions)."""
    _warned.clear()


def speed_file_disabled() -> bool:
    """``COURSE_NO_RECORD`` switches recording off, as for ``results.record``."""
    return bool(os.environ.get("COURSE_NO_RECORD"))
