"""The course's results table: numbers measured by full-profile runs, kept in git.

A lesson calls ``record(...)`` with what it measured (accuracy on the official test split,
minutes, ...). Only ``full``-profile runs on the complete dataset are written: a smoke run's
numbers say nothing about the method, so ``record`` just prints them. The table lives in
``results/results.json``; ``python -m course_utils.results`` renders it as Markdown into
``results/RESULTS.md`` (which the README and the book show).

Every row names its seed and machine (``machine_info``): a repeated run on one machine gives
the same numbers, another CPU or seed a slightly different model. Runs with other seeds
(``COURSE_SEED``) are kept as the row's spread; lessons print it (``describe_spread``) and
report their targets with it (``report_target``, ``report_claim``) instead of asserting them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

from .files import CourseFileError, atomic_write_text, json_load, project_root, read_or_explain
from .profiles import DEFAULT_SEED, active_seed, current_profile, current_split


RESULTS_DIR = project_root() / "results"
RESULTS_JSON = RESULTS_DIR / "results.json"
RESULTS_MD = RESULTS_DIR / "RESULTS.md"


#: CPU instruction-set extensions that change which kernels PyTorch and NumPy run (and so
#: the rounding of a training run), in the order they are reported.
ISA_FLAGS = ("avx512_bf16", "avx512_vnni", "avx512f", "amx_tile", "avx2", "fma", "avx", "sse4_2", "neon", "asimd")


def _cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The CPU's model name and its instruction-set flags from ``/proc/cpuinfo`` (Linux).

    Elsewhere (no such file) the model comes from ``platform.processor()`` and no flags.
    """
    model, flags = platform.processor() or platform.machine() or "unknown", set()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return model, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in ISA_FLAGS if f in flags]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """Everything about the machine that can change a measured number, as a dict.

    CPU model, the instruction sets PyTorch can use (``torch_cpu_kernels`` is the set its
    kernels were dispatched to, e.g. AVX2 or AVX512), threads, and library versions. Runs of a
    lesson are bit-identical only when all of these are the same.
    """
    import numpy
    import torch

    model, flags = _cpu_model_and_flags()
    info = {
        "cpu": model,
        "isa": " ".join(flags) or "unknown",
        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torchvision": _version("torchvision"),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_summary(info: dict | None = None) -> str:
    """Where a number was measured, in a few words, e.g. ``"AMD EPYC (AVX512), 2 threads"``."""
    info = info or machine_info()
    if "gpu" in info:
        return f"cuda ({info['gpu']})"
    return f"{info['cpu']} ({info['torch_cpu_kernels']}), {info['threads']} threads"


def load_results(path: Path = RESULTS_JSON) -> dict:
    """The results table (``{}`` if there is none yet); an unreadable file raises
    ``UnreadableFileError`` saying how to get the committed table back."""
    if not path.is_file():
        return {}
    return read_or_explain(
        path, json_load, check=_is_table,
        made_by="full-profile lesson runs (course_utils.results.record); the table is kept in git",
        fix=f"restore the committed table with:  git checkout -- {path.name}  (run in {path.parent})")


def _is_table(content) -> str | None:
    if not isinstance(content, dict):
        return f"it holds a {type(content).__name__}, not the table of results (a JSON object)"
    return None


#: What a row carries besides the lesson's own numbers (never shown as a number column).
META_KEYS = ("lesson", "name", "seed", "machine", "environment", "date", "seeds")


def row_key(lesson: str, name: str, split: str = "grouped") -> str:
    """The key of a row in ``results.json``: ``"08/SmallCNN ..."`` for the grouped split (the
    course's benchmark), ``"08/SmallCNN ... [official split]"`` for the official one."""
    return f"{lesson}/{name}" if split == "grouped" else f"{lesson}/{name} [{split} split]"


def record(lesson: str, name: str, path: Path = RESULTS_JSON, **numbers) -> dict:
    """Record one result row, e.g. ``record("05", "NumPy MLP + dropout", test_acc=0.915, minutes=1.2)``.

    The row is keyed by ``lesson``, ``name`` and the split it was measured on (``split=``,
    default the active one, ``COURSE_SPLIT``; see ``row_key``) and carries the seed
    (``setup()``'s) and the machine (``machine_info()``). A test score passes its
    ``TestScore.as_record()``: accuracy, interval, n and recalls. A run with the lesson's own seed (0) is its headline: it
    replaces the old row and keeps the other seeds' runs. A run with another seed
    (``COURSE_SEED``) is added to the row's ``seeds``, from which ``spread`` measures how much
    the lesson's results vary. Returns the row. In the smoke profile it is printed, not saved.
    """
    reserved = sorted(set(numbers) & set(META_KEYS))
    if reserved:
        raise ValueError(f"{', '.join(reserved)}: reserved for what record() adds to a row; "
                         f"name the number otherwise (e.g. n_seeds)")
    info = machine_info()
    seed = active_seed()
    split = numbers.pop("split", None) or current_split()
    row = {
        "lesson": lesson,
        "name": name,
        "split": split,
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in numbers.items()},
        "seed": seed,
        "machine": machine_summary(info),
        "environment": info,
        "date": time.strftime("%Y-%m-%d"),
    }
    if current_profile() != "full" or os.environ.get("COURSE_NO_RECORD"):
        print(f"{_short(row)} ({current_profile()} profile: not recorded)")
        return row
    table = load_results(path)
    key = row_key(lesson, name, split)
    old = table.get(key, {"lesson": lesson, "name": name})
    if seed == DEFAULT_SEED:
        table[key] = {**row, **({"seeds": old["seeds"]} if old.get("seeds") else {})}
    else:
        seeds = {**old.get("seeds", {}), str(seed): {k: v for k, v in row.items() if k not in ("lesson", "name")}}
        table[key] = {**old, "seeds": dict(sorted(seeds.items(), key=lambda kv: int(kv[0])))}
    atomic_write_text(path, json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    where = "" if seed == DEFAULT_SEED else f", as seed {seed} of the spread"
    print(f"{_short(row)} (recorded in results/{path.name}{where})")
    return row


def _short(row: dict) -> str:
    """A row in one readable line: its name and numbers, without the machine description."""
    numbers = ", ".join(f"{HEADERS.get(k, k.replace('_', ' '))} {_cell(v)}" for k, v in row.items()
                        if k not in META_KEYS and k != "environment")
    return f"lesson {row['lesson']}, {row['name']}: {numbers}"


def runs(row: dict) -> dict[int, dict]:
    """Every recorded run of a row by seed: the headline (if recorded) and its ``seeds``."""
    found = {int(seed): run for seed, run in row.get("seeds", {}).items()}
    if "date" in row:
        found[int(row.get("seed", DEFAULT_SEED))] = row
    return dict(sorted(found.items()))


def spread(row: dict, metric: str = "test_acc") -> dict | None:
    """How much ``metric`` varies over a row's runs with different seeds.

    Returns ``n`` (runs), ``seeds``, ``values``, ``mean``, ``min``, ``max``, ``half_range``
    (half of max - min), ``sd`` (sample standard deviation) and ``machines`` (how many distinct
    machines the runs name; None when some run does not describe its machine), or None when
    fewer than two runs recorded the metric.
    """
    measured = {seed: run[metric] for seed, run in runs(row).items() if isinstance(run.get(metric), (int, float))}
    if len(measured) < 2:
        return None
    values = list(measured.values())
    described = [run for seed, run in runs(row).items() if seed in measured]
    machines = (len({run.get("machine") for run in described})
                if all(run.get("environment") for run in described) else None)
    return {"n": len(values), "seeds": list(measured), "values": values, "mean": statistics.mean(values),
            "min": min(values), "max": max(values), "half_range": (max(values) - min(values)) / 2,
            "sd": statistics.stdev(values), "machines": machines}


def recorded_spread(lesson: str, name: str, metric: str = "test_acc", path: Path = RESULTS_JSON,
                    split: str | None = None) -> dict | None:
    """``spread`` of a recorded row, or None if the row or its other seeds are not recorded yet."""
    row = load_results(path).get(row_key(lesson, name, split or current_split()))
    return spread(row, metric) if row else None


def describe_recorded_test(lesson: str, name: str, split: str | None = None, path: Path = RESULTS_JSON) -> str:
    """A recorded row's test accuracy for a learner: ``"95.04 % [93.5, 96.2], n = 968 same-slice
    groups"``, or ``"... % of the test images (recorded before intervals were kept)"`` for an
    older row, or ``"not recorded yet"``. ``split``: the active one unless given."""
    row = load_results(path).get(row_key(lesson, name, split or current_split()))
    if not row or "test_acc" not in row:
        return "not recorded yet"
    if "test_low" not in row:
        return f"{100 * row['test_acc']:.2f} % of the test images (recorded before intervals were kept)"
    return (f"{100 * row['test_acc']:.2f} % [{100 * row['test_low']:.1f}, {100 * row['test_high']:.1f}], "
            f"n = {row['test_n']} same-slice groups")


def describe_spread(stats: dict | None) -> str:
    """"the 3 recorded runs (seeds 0, 1, 2) range from 98.3 to 98.7 % (0.4 points)", for a learner.

    The range (lowest to highest) is what is printed: with three or so runs it is the honest
    summary (a standard deviation of three numbers says little). Runs recorded on different
    machines are said to be so.
    """
    if not stats:
        return "how much runs of this lesson vary is not measured yet"
    seeds = ", ".join(str(seed) for seed in stats["seeds"])
    machines = stats.get("machines", 1)
    where = ("; not every run names its machine" if machines is None
             else f" on {machines} machines" if machines > 1 else "")
    return (f"the {stats['n']} recorded runs (seeds {seeds}{where}) range from {100 * stats['min']:.1f} "
            f"to {100 * stats['max']:.1f} % ({100 * (stats['max'] - stats['min']):.1f} points)")


def report_target(what: str, value: float, target: float, stats: dict | None = None) -> bool:
    """Say whether this run reached a target accuracy, with how much runs vary; never raises.

    An accuracy after training is an outcome, not a fact: another seed or another CPU ends a
    few images apart. So a lesson reports its target instead of asserting it, together with
    how many recorded runs reached it. Returns whether the target was reached.
    """
    reached = bool(value >= target)
    print(f"target {100 * target:.1f} % {what}: {'reached' if reached else 'not reached'} in this run "
          f"({100 * value:.2f} %); {describe_spread(stats)}.")
    if current_profile() != "full":
        print(f"  ({current_profile()} profile: a tiny run through the same code, not meant to reach it.)")
    elif stats:
        hits = sum(v >= target for v in stats["values"])
        print(f"  {hits} of the {stats['n']} recorded runs {'reaches' if hits == 1 else 'reach'} it "
              "(a full run records itself before this line, so it is among them).")
    return reached


def announce_minutes(lesson: str, name: str, what: str = "this training", path: Path = RESULTS_JSON) -> str:
    """Print, before a long stage starts, how long the recorded full-profile run of it took.

    The recorded ``minutes`` of the row ``lesson/name`` and where they were measured; a learner
    on a slower or busy CPU knows what to expect. Prints nothing in the smoke profile (its runs
    are tiny). Returns the message.
    """
    if current_profile() != "full":
        return ""
    row = load_results(path).get(row_key(lesson, name, current_split()), {})
    if isinstance(row.get("minutes"), (int, float)):
        message = (f"{what}: the recorded full-profile run took {row['minutes']:.1f} min "
                   f"({row.get('machine', 'machine not recorded')}, {row.get('date', '')}); "
                   f"a slower or busy CPU takes longer")
    else:
        message = f"{what}: no full-profile time recorded yet"
    print(message)
    return message


def report_claim(claim: str, holds: bool, stats: dict | None = None) -> bool:
    """Like ``report_target`` for a comparison ("flips beat every other remedy"); never raises."""
    spread_text = f"; {describe_spread(stats)}" if stats else ""
    print(f"{claim}: {'holds' if holds else 'does not hold'} in this run{spread_text}.")
    if current_profile() != "full":
        print(f"  ({current_profile()} profile: a tiny run through the same code; the claim is about the full run.)")
    return bool(holds)


#: Readable headers for the numbers lessons record (others are shown under their own name).
HEADERS = {
    "name": "model / run",
    "split": "split",
    "val_acc": "validation acc.",
    "test_acc": "test acc.",
    "test_n": "n (groups)",
    "test_images": "test images",
    "test_image_acc": "image acc.",
    "official_acc": "official test acc.",
    "clean_acc": "leakage-free test acc.",
    "leaked_acc": "acc. on leaked test images",
    "clean_n": "leakage-free test images",
    "minutes": "minutes",
    "epochs": "epochs",
}


#: The columns a reader looks for first, right after the run's name (when a lesson records them);
#: the rest follow in the order they were first recorded.
LEADING = ("split", "test_acc", "test_n", "val_acc", "minutes")

#: Columns shown inside another one: the interval of ``test_acc`` is printed in its cell.
FOLDED = ("test_low", "test_high")


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _row_cell(row: dict, column: str) -> str:
    """One cell of a row; a test accuracy with its interval reads ``0.9512 [0.934, 0.965]``."""
    value = row.get(column, "")
    if column == "test_acc" and isinstance(value, float) and "test_low" in row:
        return f"{value:.4f} [{row['test_low']:.3f}, {row['test_high']:.3f}]"
    return _cell(value)


def to_markdown(table: dict) -> str:
    """Render the results as Markdown: one table per lesson, with the columns that lesson records.

    Lessons record different things (accuracies, minutes, sparsity, latency...), so each
    lesson's table has only its own columns: first the split, the test accuracy with its
    interval, n and the validation accuracy (``LEADING``), then the others in the order they
    were first recorded, then where and when they were measured. Rows measured with several seeds get a second table:
    the spread of their accuracies, seed by seed.
    """
    by_lesson: dict[str, list[dict]] = {}
    for row in table.values():
        by_lesson.setdefault(str(row["lesson"]), []).append(row)
    blocks = []
    for lesson in sorted(by_lesson):
        rows = [row for row in by_lesson[lesson] if "date" in row]
        columns = ["name"] + [c for c in LEADING if any(c in row for row in rows)]
        for row in rows:
            columns += [k for k in row if k not in columns and k not in META_KEYS and k not in FOLDED]
        columns += ["machine", "date"]
        lines = [f"## Lesson {lesson}", ""]
        if rows:
            lines += ["| " + " | ".join(HEADERS.get(c, c.replace("_", " ")) for c in columns) + " |",
                      "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_row_cell(row, c) for c in columns) + " |" for row in rows]
        spread_lines = _spread_table(by_lesson[lesson])
        if spread_lines:
            lines += (["", "The rows above are the runs with seed 0."] if rows else []) + [""] + spread_lines
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + _machines(table)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _spread_table(rows: list[dict]) -> list[str]:
    """Markdown lines: mean, min-max and the per-seed values of every row run with several seeds."""
    lines = []
    for row in rows:
        dates = {seed: run.get("date", "") for seed, run in runs(row).items()}
        for metric in ("test_acc", "val_acc"):
            stats = spread(row, metric)
            if stats:
                per_seed = ", ".join(f"{seed}: {_percent(v)} ({dates[seed]})"
                                     for seed, v in zip(stats["seeds"], stats["values"]))
                label = row["name"] + ("" if row.get("split", "grouped") == "grouped" else f" ({row['split']} split)")
                lines.append(f"| {label} | {HEADERS.get(metric, metric)} | {stats['n']} | "
                             f"{_percent(stats['mean'])} | ±{100 * stats['half_range']:.2f} | "
                             f"{_percent(stats['min'])}-{_percent(stats['max'])} | {per_seed} |")
    if not lines:
        return []
    return ["Spread over seeds (%; ± is half of max - min; per seed: the value and the date of its run, "
            "whose machine `results/results.json` names):", "",
            "| model / run | metric | runs | mean | ± | min-max | per seed |", "|---|---|---|---|---|---|---|", *lines]


def _machines(table: dict) -> str:
    """A closing section: the machines (CPU, instruction sets, libraries) the rows were measured on."""
    seen: list[dict] = []
    for row in table.values():
        for run in runs(row).values():
            info = run.get("environment")
            if info and info not in seen:
                seen.append(info)
    if not seen:
        return ""
    keys = list(dict.fromkeys(k for info in seen for k in info))
    lines = ["## Machines", "", "Rows recorded with a machine description ran on:", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(info.get(k, "")) for k in keys) + " |" for info in seen]
    return "\n" + "\n".join(lines) + "\n"


def main() -> int:
    try:
        table = load_results()
    except CourseFileError as error:
        print(error, file=sys.stderr)
        return 1
    atomic_write_text(
        RESULTS_MD,
        "# Results (full profile, measured)\n\n"
        "Written by `python -m course_utils.results` from `results/results.json`; every row "
        "comes from a full-profile run of the lesson named, with seed 0. The `split` column says "
        "what it was trained and scored on: `grouped` is the course's benchmark (no copy or "
        "neighbouring slice on both sides of a boundary; test accuracy counts each same-slice "
        "group once; the brackets give its Wilson 95 % interval over n groups), `official` the dataset's own "
        "`Training/` and `Testing/` folders, whose test images are mostly copies of training "
        "images (comparable with published figures, and inflated). Where a lesson was also "
        "run with other seeds (`COURSE_SEED`), a second table gives the spread, seed by seed. "
        "Repeated on one machine a run gives the same numbers; another machine can end a few "
        "test images away (see the README).\n\n" + to_markdown(table)
    )
    print(f"wrote {RESULTS_MD} ({len(table)} rows) on {platform.node() or sys.platform}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
