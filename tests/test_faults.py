"""Fault injection: training killed at random moments, uploads under a memory limit.

* A process that trains and checkpoints (through ``fit`` and its real save path) is killed
  with SIGKILL at random moments, again and again, each run resuming from the last. After
  every kill the checkpoint folder must hold only files that load (or none), and the best
  model must never be lost nor replaced by a worse one. Starting Python and PyTorch takes
  seconds, so one helper process imports them once and forks a fresh trainer for each kill.
* An extreme strip uploaded to the app, in a process whose memory is capped, must be refused
  with a message before anything large is allocated.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from course_utils.training import last_state_path, read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
KILLS = 25

# The helper: imports once, then for each "kill <seconds>" line forks a trainer that resumes
# from the last state and trains until it is killed that many seconds later; for "finish" a
# trainer that resumes and trains two more epochs to the end.
TRAINER = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    from torch import nn
    from course_utils.training import fit, last_state_path

    torch.set_num_threads(1)
    checkpoint = sys.argv[1]

    def train(extra_epochs, checkpoint=checkpoint):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=generator)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 2))
        epochs = 10**9 if checkpoint else 1
        if extra_epochs:
            last = torch.load(last_state_path(checkpoint), weights_only=False)
            epochs = last["epoch"] + extra_epochs
        fit(model, data, data, epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=0.02),
            device="cpu", checkpoint=checkpoint, resume=checkpoint is not None, progress=False)

    train(0, checkpoint=None)  # warm up once here (lazy imports, first calls), not in every trainer
    print("ready", flush=True)
    for line in sys.stdin:
        command, *arg = line.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                train(2 if command == "finish" else 0)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        if command == "kill":
            time.sleep(float(arg[0]))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)
""")


def _val_loss(state: dict) -> float:
    """The loss of stored weights on the trainer's data, recomputed (a torn file would not match)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 2))
    model.load_state_dict(state)
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y).item()


def _check_folder(path: Path, previous_best: float) -> float:
    """Every checkpoint file present loads; the best never got worse. Returns the best value."""
    assert not list(path.parent.glob("*.damaged-*")), "an atomic write never leaves a damaged file"
    best = math.inf
    if path.exists():
        stored = read_checkpoint(path)
        best = stored["metric"]["value"]
        assert best == pytest.approx(_val_loss(stored["model"]), rel=1e-5)
    if last_state_path(path).exists():
        last = torch.load(last_state_path(path), weights_only=False)
        assert last["epoch"] >= 1 and len(last["history"]["train_loss"]) == last["epoch"]
    assert best <= previous_best, "a better stored model was lost or replaced by a worse one"
    if previous_best < math.inf:
        assert path.exists(), "the best model was lost"
    return best


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the helper forks a trainer per kill (POSIX only)")
def test_sigkill_at_random_moments_never_breaks_the_checkpoints(tmp_path):
    path = tmp_path / "run.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    helper = subprocess.Popen([sys.executable, "-c", TRAINER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert helper.stdout.readline().strip() == "ready"
        rng = random.Random(16)
        best, mid_save = math.inf, 0
        for _ in range(KILLS):
            helper.stdin.write(f"kill {rng.uniform(0.02, 0.25):.3f}\n")
            helper.stdin.flush()
            status = int(helper.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9, f"the trainer ended by itself: {status}"
            mid_save += bool(list(tmp_path.glob("*.partial")))
            best = _check_folder(path, best)
        helper.stdin.write("finish\n")
        helper.stdin.flush()
        assert int(helper.stdout.readline()) == 0  # resumed and finished cleanly
        _check_folder(path, best)
        assert read_checkpoint(path)["metric"]["value"] <= best
        # The temporary files of killed writers were swept by the later writes.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.last.pt", "run.pt"]
        print(f"{KILLS} kills, {mid_save} of them left a temporary file (killed mid-save)")
    finally:
        helper.kill()
        helper.wait()


# ---------------------------------------------------------------- uploads under a memory limit

UPLOAD = textwrap.dedent("""
    import io, resource, sys
    import torch
    from PIL import Image
    from course_utils import app, training
    from course_utils.models import SmallCNN
    from course_utils.training import save_checkpoint

    model = SmallCNN(widths=(8, 16), hidden=0).eval()
    save_checkpoint(training.checkpoint_path("08", "smoke"), model, metric="val_loss", value=1.0,
                    meta={"config": model.config, "size": 32, "mean": 0.0, "std": 1.0})
    ui = app.build_app(items=[], profile="smoke").app
    uploads = []
    for size in sys.argv[1:]:
        buffer = io.BytesIO()
        Image.new("L", tuple(int(n) for n in size.split("x"))).save(buffer, "PNG")
        uploads.append(buffer.getvalue())
    # From here on the process may grow by at most 512 MB: a padded square would need GBs.
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = size + 512 * 2**20 if hard == resource.RLIM_INFINITY else min(size + 512 * 2**20, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    for payload in uploads:
        ui.handle_upload(payload, "strip.png")
        print(ui.status.value.replace("\\n", " "))
""")
STRIPS = [(50_000, 32), (100_000, 32), (32, 100_000), (2_000, 100)]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the memory limit")
def test_long_thin_uploads_are_refused_before_allocating(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COURSE_THREADS": "1",
           "COURSE_CHECKPOINT_DIR": str(tmp_path), "COURSE_PROFILE": "smoke"}
    sizes = [f"{w}x{h}" for w, h in STRIPS]
    done = subprocess.run([sys.executable, "-c", UPLOAD, *sizes], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = done.stdout.strip().splitlines()
    assert len(statuses) == len(STRIPS)
    for (width, height), status in zip(STRIPS, statuses):
        assert "Unexpected error" not in status and "MemoryError" not in status
        assert f"{width} × {height} px" in status and "times longer than it" in status
        assert "Crop the image" in status
