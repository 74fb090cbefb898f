"""Training speed: the OpenMP wait policy, the shared lesson-08 step, throughput and the slow-run note.

Nothing here depends on how fast this machine is: the policy is read back from the OpenMP
runtime itself (``OMP_DISPLAY_ENV``), and slow runs are simulated with recorded speeds no
computer reaches.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import course_utils.training.loop as train_mod
from course_utils import benchmarks, profiles, speed
from course_utils.lessons import LESSON_DIR, read_lesson
from course_utils.models import LESSON08_CNN

ROOT = Path(__file__).resolve().parent.parent


def openmp_settings(code: str, **env: str) -> tuple[dict[str, str], str]:
    """Run ``code`` in a fresh Python; return the wait settings the OpenMP runtime started with
    (it prints them when ``OMP_DISPLAY_ENV`` is set) and what the code printed."""
    # The thread settings of the test run itself (`make unit` gives each worker one thread) must
    # not reach the fresh Python: `auto` only looks at the computer when training uses two threads.
    inherited = profiles.OPENMP_VARIABLES + (profiles.OMP_WAIT_VARIABLE, "COURSE_THREADS", "OMP_NUM_THREADS")
    clean = {k: v for k, v in os.environ.items() if k not in inherited}
    clean |= {"OMP_DISPLAY_ENV": "VERBOSE", "PYTHONPATH": str(ROOT)} | env
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    settings = dict(re.findall(r"(OMP_WAIT_POLICY|GOMP_SPINCOUNT) = '([^']*)'", out.stderr))
    return settings, out.stdout


def test_importing_the_course_on_a_busy_computer_makes_the_threads_sleep():
    # The busy processes run before the fresh Python starts: `auto` sees them when it is imported.
    with benchmarks.busy_processes(2, seconds=120):
        settings, out = openmp_settings("import course_utils.training.loop\nfrom course_utils.profiles import setup\n"
                                        "setup(threads=2)")
    assert settings == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}
    assert "OpenMP threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE): other programs kept" in out
    assert "Note:" not in out


def test_auto_keeps_pytorchs_spinning_on_an_idle_computer(monkeypatch):
    # Whether this machine is idle now is not up to the test: the measurement is replaced.
    monkeypatch.setattr(profiles, "busy_cores", lambda seconds=0.2: 0.1)
    monkeypatch.setattr(profiles, "openmp_started", lambda: False)
    monkeypatch.setattr(profiles, "_openmp_policy_set", None)
    monkeypatch.setattr(profiles, "_openmp_decision", None)
    for name in profiles.OPENMP_VARIABLES + (profiles.OMP_WAIT_VARIABLE, "COURSE_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert profiles.apply_openmp_policy() == {}
    assert not any(name in os.environ for name in profiles.OPENMP_VARIABLES)
    assert "spin briefly" in profiles.openmp_decision() and "0.1 cores" in profiles.openmp_decision()
    assert profiles.openmp_environment("auto", busy=0.4) == {}
    assert profiles.openmp_environment("auto", busy=0.5) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert profiles.openmp_environment("auto", busy=None) == {}  # cannot tell: PyTorch's default


def test_auto_does_not_look_when_training_uses_one_thread(monkeypatch):
    monkeypatch.setattr(profiles, "busy_cores", lambda seconds=0.2: pytest.fail("measured for one thread"))
    monkeypatch.setattr(profiles, "openmp_started", lambda: False)
    monkeypatch.setenv("COURSE_THREADS", "1")
    for name in profiles.OPENMP_VARIABLES + (profiles.OMP_WAIT_VARIABLE,):
        monkeypatch.delenv(name, raising=False)
    assert profiles.apply_openmp_policy() == {}


def test_busy_cores_sees_a_busy_process():
    with benchmarks.busy_processes(1, seconds=60):
        assert profiles.busy_cores() >= 0.8


def test_without_the_course_pytorch_spins():
    # What the course changes: PyTorch alone waits by spinning 300 000 times.
    settings, _ = openmp_settings("import torch")
    assert settings["GOMP_SPINCOUNT"] == "300000"


@pytest.mark.parametrize("env, expected", [
    ({"COURSE_OMP_WAIT": "default"}, {"GOMP_SPINCOUNT": "300000"}),
    ({"COURSE_OMP_WAIT": "5000"}, {"GOMP_SPINCOUNT": "5000"}),
    ({"COURSE_OMP_WAIT": "active"}, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ({"COURSE_OMP_WAIT": "passive"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),   # the runtime's own variables win
    ({"GOMP_SPINCOUNT": "777"}, {"GOMP_SPINCOUNT": "777"}),
])
def test_learners_can_override_the_policy(env, expected):
    with benchmarks.busy_processes(1, seconds=120):  # busy or not: a value set by hand wins
        settings, out = openmp_settings("import course_utils.training.loop\nfrom course_utils.profiles import setup\n"
                                        "setup(threads=2)", **env)
    assert expected.items() <= settings.items()
    assert "Note:" not in out


@pytest.mark.parametrize("env, words", [({}, ""), ({"COURSE_OMP_WAIT": "auto"}, ""),
                                        ({"COURSE_OMP_WAIT": "passive"}, "OMP_WAIT_POLICY=PASSIVE"),
                                        ({"COURSE_OMP_WAIT": "3000"}, "GOMP_SPINCOUNT=3000"),
                                        ({"COURSE_OMP_WAIT": "default"}, ""), ({"OMP_WAIT_POLICY": "ACTIVE"}, "")])
def test_make_lab_starts_jupyter_with_the_policy(env, words):
    # The Makefile prefixes `jupyter lab` and `jupyter-book` with these words: every kernel
    # they start has a chosen policy before its first `import torch`. With `auto` each kernel
    # chooses when it starts: make lab installs a kernel configuration that imports the course.
    with benchmarks.busy_processes(1, seconds=120):  # make's own process must not pass on its `auto` choice
        _, out = openmp_settings("import course_utils\nfrom course_utils.profiles import openmp_exports\n"
                                 "print(openmp_exports())", **env)
    assert out.strip() == words
    makefile = (ROOT / "Makefile").read_text()
    assert "openmp_exports()" in makefile and "cp jupyter/ipython_kernel_config.py $(VENV)/etc/ipython/" in makefile


def test_every_kernel_imports_the_course_when_it_starts():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("ipython_kernel_config.py", path=str(ROOT / "jupyter")).load_config()
    lines = config.IPKernelApp.exec_lines
    settings, _ = openmp_settings("\n".join(lines) + "\nimport torch", COURSE_OMP_WAIT="passive")
    assert settings["OMP_WAIT_POLICY"] == "PASSIVE"  # the kernel's first lines set it before torch loads


def test_setup_says_when_torch_was_loaded_too_early():
    settings, out = openmp_settings("import torch\nfrom course_utils.profiles import setup\nsetup(threads=2)",
                                    COURSE_OMP_WAIT="passive")
    assert settings["GOMP_SPINCOUNT"] == "300000"  # too late: the runtime had started
    assert "PyTorch was loaded before the course could set OMP_WAIT_POLICY=PASSIVE" in out
    assert "make lab" in out
    _, out = openmp_settings("import course_utils.profiles\nimport torch\ncourse_utils.profiles.setup(threads=2)",
                             COURSE_OMP_WAIT="passive")
    assert "Note:" not in out
    _, out = openmp_settings("import torch\nfrom course_utils.profiles import setup\nsetup(threads=1)",
                             COURSE_OMP_WAIT="passive")
    assert "Note:" not in out  # a single thread never waits for another


def test_setup_says_when_the_computer_is_busy_but_the_threads_spin():
    # `auto` could not look (PyTorch came first) and the computer is busy when setup() runs.
    code = "import torch\nfrom course_utils.profiles import setup\nsetup(threads=2)"
    with benchmarks.busy_processes(2, seconds=120):
        settings, out = openmp_settings(code)
        _, quiet = openmp_settings(code.replace("threads=2", "threads=1"))
    assert settings["GOMP_SPINCOUNT"] == "300000"
    assert re.search(r"Note: other programs keep [\d.]+ cores busy, but PyTorch's threads were started before "
                     r"the course could choose", out)
    assert "Restart the kernel" in out and "COURSE_OMP_WAIT=passive" in out
    assert "Note:" not in quiet


def test_the_slow_note_suggests_a_restart_only_when_the_threads_spin(monkeypatch, speeds):
    for name in profiles.OPENMP_VARIABLES + (profiles.OMP_WAIT_VARIABLE,):
        monkeypatch.delenv(name, raising=False)
    assert "restart the kernel" in speed.SpeedWatch("spinning", reference=200.0).check(50.0)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    message = speed.SpeedWatch("sleeping", reference=200.0).check(50.0)
    assert "another program" in message and "restart" not in message


TRAIN_AND_HASH = """
import hashlib
import course_utils.training.loop
import torch
from torch import nn
from course_utils.models import LESSON08_CNN, SmallCNN
from course_utils.profiles import setup
from course_utils.training.loop import train_one_epoch
setup(seed=0, threads=2, verbose=False)
g = torch.Generator().manual_seed(0)
data = [(torch.randn(32, 1, 48, 48, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(4)]
model = SmallCNN(**LESSON08_CNN).to(memory_format=torch.channels_last)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
train_one_epoch(model, data, optimizer, "cpu", nn.CrossEntropyLoss(label_smoothing=0.1), channels_last=True)
digest = hashlib.sha256()
for tensor in model.state_dict().values():
    digest.update(tensor.numpy().tobytes())
print(digest.hexdigest())
"""


def test_the_wait_policy_does_not_change_the_numbers():
    # Two threads split the work the same way whether they spin or sleep while they wait.
    runs = {policy: openmp_settings(TRAIN_AND_HASH, COURSE_OMP_WAIT=policy) for policy in ("default", "passive")}
    assert runs["default"][0]["GOMP_SPINCOUNT"] == "300000" and runs["passive"][0]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert runs["default"][1].strip() == runs["passive"][1].strip() != ""


def test_a_bad_policy_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_OMP_WAIT", "sometimes")
    with pytest.raises(ValueError, match=r"COURSE_OMP_WAIT='sometimes' .*passive.*active.*default"):
        profiles.openmp_environment()
    assert profiles.openmp_environment("PASSIVE ") == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert profiles.openmp_environment("") == profiles.openmp_environment(profiles.COURSE_OMP_WAIT)


# --------------------------------------------------------------------------------------
# One training step for the lesson, fit and the benchmarks
# --------------------------------------------------------------------------------------


def lesson08_code() -> str:
    notebook = read_lesson(LESSON_DIR / "08_cnn_for_brain_mri.md")
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def test_lesson08_trains_the_network_and_step_the_benchmarks_time():
    code = lesson08_code()
    assert f"WIDTHS = {LESSON08_CNN['widths']}" in code
    assert (f"model = SmallCNN(in_channels=1, n_classes=len(CLASSES), widths=WIDTHS, "
            f"hidden={LESSON08_CNN['hidden']}, dropout={LESSON08_CNN['dropout']})") in code
    assert f"SIZE = {benchmarks.LESSON08_SIZE} " in code and f"BATCH_SIZE = {benchmarks.LESSON08_BATCH}\n" in code
    main_run = code[code.index("history = fit(model, train_loader"):]
    assert "channels_last=True" in main_run.split("\n\n")[0]
    assert "label_smoothing=0.1" in main_run.split("\n\n")[0]


def count_steps(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = train_mod.train_step

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", counting)
    return calls


def tiny_images(n: int = 40, size: int = 32, batch: int = 4):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 1, size, size, generator=g), torch.arange(n) % 4)
    return torch.utils.data.DataLoader(data, batch_size=batch)


def test_benchmark_and_fit_run_the_same_step(monkeypatch):
    calls = count_steps(monkeypatch)
    result = benchmarks.lesson08_throughput(tiny_images(), batches=5, warmup=2)
    assert len(calls) == 7 and result["images"] == 20 and result["images_per_second"] > 0
    calls.clear()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 4))
    train_mod.fit(model, tiny_images(), None, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  device="cpu", progress=False, channels_last=True)
    assert len(calls) == 2 * 10


def test_a_loader_too_short_for_the_benchmark_is_an_error():
    with pytest.raises(ValueError, match="needs 6"):
        benchmarks.lesson08_throughput(tiny_images(n=8), batches=3, warmup=3)


def test_busy_processes_are_stopped():
    with benchmarks.busy_processes(1, seconds=60) as procs:
        assert procs[0].poll() is None
    assert procs[0].poll() is not None


# --------------------------------------------------------------------------------------
# Throughput in the history, recorded speeds, the slow-run note
# --------------------------------------------------------------------------------------


@pytest.fixture
def speeds(tmp_path, monkeypatch):
    """A private results/speed.json, a full-profile run, and no earlier warnings."""
    path = tmp_path / "speed.json"
    monkeypatch.setattr(speed, "SPEED_JSON", path)
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.delenv("COURSE_NO_RECORD", raising=False)
    speed.reset_warnings()
    yield path
    speed.reset_warnings()


def test_speed_watch_warns_once_below_half_the_recorded_speed(speeds):
    watch = speed.SpeedWatch("run", reference=200.0)
    assert watch.check(150.0) is None
    message = watch.check(80.0)
    assert message.startswith("training at 40 % of the usual speed") and "another program" in message
    assert watch.check(50.0) is None  # once
    assert speed.SpeedWatch("run", reference=200.0).check(10.0) is None  # once per run key and process


def test_speed_watch_without_a_record_compares_with_its_fastest_epoch(speeds):
    watch = speed.SpeedWatch("new run")
    assert watch.check(100.0) is None and watch.check(60.0) is None
    assert "30 %" in watch.check(30.0)


def test_record_speed_keeps_the_fastest_per_machine(speeds):
    here = speed.machine()
    other = here | {"cpu": "another CPU"}
    assert speed.record_speed("run", 100.0, "test", here)
    assert not speed.record_speed("run", 90.0, "test", here)
    assert speed.record_speed("run", 50.0, "test", other)
    assert speed.record_speed("run", 120.0, "test", here)
    assert speed.recorded_speed("run", here) == 120.0 and speed.recorded_speed("run", other) == 50.0
    assert speed.recorded_speed("run", here | {"threads": here["threads"] + 1}) is None
    assert len(json.loads(speeds.read_text())["run"]) == 2


def test_fit_reports_throughput_and_says_once_when_slow(speeds, capsys):
    speed.record_speed("tiny", 1e12, "a speed no computer reaches")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 4))
    history = train_mod.fit(model, tiny_images(), tiny_images(n=8), epochs=3,
                            optimizer=torch.optim.SGD(model.parameters(), lr=0.01), device="cpu",
                            checkpoint=train_mod.checkpoint_dir() / "tiny.pt")
    out = capsys.readouterr().out
    assert len(history.images_per_second) == 3 and min(history.images_per_second) > 0
    assert out.count("Note: training at 0 % of the usual speed") == 1
    assert re.search(r"training \d+ images/s", out)
    assert speed.recorded_speed("tiny") == 1e12  # a slower run never replaces the record


def test_a_lesson_run_records_its_speed_and_others_do_not(speeds, tmp_path, monkeypatch, capsys):
    def train(checkpoint: Path):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 4))
        train_mod.fit(model, tiny_images(), None, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                      device="cpu", checkpoint=checkpoint)

    train(train_mod.checkpoint_dir() / "full_run.pt")
    assert speed.recorded_speed("full_run") > 0
    train(tmp_path / "elsewhere.pt")  # not a lesson's checkpoint (a test, an experiment)
    assert speed.recorded_speed("elsewhere") is None
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    train(train_mod.checkpoint_dir() / "smoke_run.pt")
    assert speed.recorded_speed("smoke_run") is None
    assert "Note:" not in capsys.readouterr().out
