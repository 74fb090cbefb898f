"""Tests for course_utils.profiles (budgets, seeds, device) and course_utils.results."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from course_utils import profiles, results


@pytest.fixture(autouse=True)
def default_seed(monkeypatch):
    """Every test starts with no COURSE_SEED and no seed left behind by an earlier ``setup()``."""
    monkeypatch.delenv("COURSE_SEED", raising=False)
    monkeypatch.setattr(profiles, "_active_seed", None)


def test_budget_follows_the_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert profiles.budget(full=15, smoke=1) == 1
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert profiles.budget(full=15, smoke=1) == 15
    monkeypatch.delenv("COURSE_PROFILE")
    assert profiles.current_profile() == "full"


def test_unknown_profile_is_an_error(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="full, smoke"):
        profiles.budget(full=1, smoke=0)


def test_setup_makes_runs_repeatable(capsys):
    profiles.setup(seed=123, threads=1)
    first = (np.random.rand(3), torch.rand(3))
    profiles.setup(seed=123, threads=1)
    second = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.get_num_threads() == 1
    assert "seed=123" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["two", "-1", "1.5", "2 threads"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("COURSE_THREADS", value)
    with pytest.raises(ValueError) as info:
        profiles.setup(seed=0, verbose=False)
    message = str(info.value)
    assert f"COURSE_THREADS={value!r} is not a number of threads" in message
    assert "COURSE_THREADS=2" in message and "unset it" in message and "invalid literal" not in message


@pytest.mark.parametrize("value, expected", [("", None), ("0", None), (" 3 ", 3), ("1", 1)])
def test_thread_counts_that_are_accepted(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_THREADS", value)
    assert profiles.threads_from_env(default=7) == (expected or 7)


def test_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert profiles.choose_device() == torch.device("cpu")


def test_allocator_tuning_reports_honestly():
    # On glibc it must apply; elsewhere it must say it did not.
    import platform

    applied = profiles.tune_allocator()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied
    else:
        assert applied is False


def test_results_are_written_only_in_full_profile(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    monkeypatch.delenv("COURSE_NO_RECORD", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    results.record("05", "mlp", path=path, test_acc=0.9)
    assert not path.exists()
    monkeypatch.setenv("COURSE_PROFILE", "full")
    results.record("05", "mlp", path=path, test_acc=0.91234567, minutes=1.5)
    results.record("05", "mlp", path=path, test_acc=0.92)  # a new run replaces the row
    results.record("08", "cnn", path=path, epochs=3, test_acc=0.97, test_low=0.95, test_high=0.98, test_n=600)
    table = json.loads(path.read_text())
    assert list(table) == ["05/mlp", "08/cnn"]
    assert table["05/mlp"]["test_acc"] == 0.92 and "minutes" not in table["05/mlp"]
    markdown = results.to_markdown(table)
    assert markdown.index("## Lesson 05") < markdown.index("## Lesson 08")
    lesson05, lesson08 = markdown.split("## Lesson 08")
    lesson08, machines = lesson08.split("## Machines")
    assert machines.count("\n|") == 3  # one machine: header, rule, one row
    assert "| model / run | split | test acc. | machine | date |" in lesson05  # no minutes: none recorded
    assert "| mlp | grouped | 0.92 |" in lesson05 and "cnn" not in lesson05
    # the split, the accuracy with its interval and n lead, before what was recorded first
    assert "| model / run | split | test acc. | n (groups) | epochs | machine | date |" in lesson08
    assert "| cnn | grouped | 0.9700 [0.950, 0.980] | 600 | 3 |" in lesson08 and lesson08.count("\n|") == 3


def test_course_seed_is_read_from_the_environment(monkeypatch):
    assert profiles.current_seed() == 0
    monkeypatch.setenv("COURSE_SEED", " 2 ")
    assert profiles.current_seed() == 2
    for bad in ("one", "1.5", "-1"):
        monkeypatch.setenv("COURSE_SEED", bad)
        with pytest.raises(ValueError, match="COURSE_SEED.*whole number"):
            profiles.current_seed()


def test_setup_takes_the_course_seed_unless_given_one(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_SEED", "7")
    profiles.setup(threads=1)
    assert profiles.active_seed() == 7 and "seed=7" in capsys.readouterr().out
    first = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(first, torch.rand(3))
    profiles.setup(seed=3, threads=1)  # an explicit seed wins
    assert profiles.active_seed() == 3


def test_other_seeds_keep_their_own_checkpoints(tmp_path, monkeypatch):
    from course_utils.training import checkpoint_dir

    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    assert checkpoint_dir("full") == tmp_path / "full"
    monkeypatch.setenv("COURSE_SEED", "2")
    assert checkpoint_dir("full") == tmp_path / "full" / "seed2"


def test_a_recorded_result_says_where_and_with_which_seed(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_NO_RECORD", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "full")
    path = tmp_path / "results.json"
    results.record("08", "cnn", path=path, test_acc=0.96)
    row = json.loads(path.read_text())["08/cnn"]
    env = row["environment"]
    assert row["seed"] == 0
    assert env["cpu"] and env["threads"] == torch.get_num_threads()
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["torch_cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert f"{env['threads']} threads" in row["machine"]


def test_cpu_flags_are_summarised(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nmodel name : Some CPU 9000\nflags : fpu sse4_2 avx avx2 fma avx512f\n"
                       "processor : 1\nmodel name : Some CPU 9000\nflags : fpu sse4_2 avx avx2 fma avx512f\n")
    assert results._cpu_model_and_flags(cpuinfo) == ("Some CPU 9000", ["avx512f", "avx2", "fma", "avx", "sse4_2"])
    model, flags = results._cpu_model_and_flags(tmp_path / "missing")
    assert model and flags == []


def test_other_seeds_are_recorded_as_the_spread_of_the_headline(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_NO_RECORD", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "full")
    path = tmp_path / "results.json"
    for seed, acc in ((1, 0.95), (0, 0.96), (2, 0.98)):
        monkeypatch.setenv("COURSE_SEED", str(seed))
        profiles.setup(threads=1, verbose=False)
        results.record("11", "lite0", path=path, test_acc=acc, epochs=5)
    monkeypatch.setenv("COURSE_SEED", "0")
    profiles.setup(threads=1, verbose=False)
    results.record("11", "lite0", path=path, test_acc=0.96, epochs=5)  # a new headline keeps the seeds
    row = json.loads(path.read_text())["11/lite0"]
    assert row["test_acc"] == 0.96 and row["seed"] == 0 and list(row["seeds"]) == ["1", "2"]
    assert row["seeds"]["2"]["test_acc"] == 0.98 and "environment" in row["seeds"]["2"]
    stats = results.recorded_spread("11", "lite0", path=path)
    assert stats["n"] == 3 and stats["seeds"] == [0, 1, 2]
    assert stats["mean"] == pytest.approx(0.9633, abs=1e-4) and stats["half_range"] == pytest.approx(0.015)
    assert results.recorded_spread("11", "lite0", "val_acc", path=path) is None  # not measured
    markdown = results.to_markdown(json.loads(path.read_text()))
    today = time.strftime("%Y-%m-%d")
    spread_row = (f"| lite0 | test acc. | 3 | 96.33 | ±1.50 | 95.00-98.00 | "
                  f"0: 96.00 ({today}), 1: 95.00 ({today}), 2: 98.00 ({today}) |")
    assert spread_row in markdown
    assert "## Machines" in markdown and "| 0.96 | 5 |" in markdown  # the headline row: seed 0's numbers


def test_report_target_reports_and_never_raises(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    stats = {"n": 3, "seeds": [0, 1, 2], "values": [0.981, 0.987, 0.984], "mean": 0.984, "min": 0.981,
             "max": 0.987, "half_range": 0.003, "sd": 0.003}
    assert results.report_target("on the test split", 0.987, 0.985, stats) is True
    out = capsys.readouterr().out
    assert "target 98.5 % on the test split: reached in this run (98.70 %)" in out
    assert "the 3 recorded runs (seeds 0, 1, 2) range from 98.1 to 98.7 % (0.6 points)" in out
    assert "1 of the 3 recorded runs reaches it" in out
    assert results.report_target("on the test split", 0.981, 0.985, stats) is False
    out = capsys.readouterr().out
    assert "not reached in this run (98.10 %)" in out
    assert "1 of the 3 recorded runs reaches it" in out
    assert results.report_target("on the test split", 0.5, 0.985, None) is False
    out = capsys.readouterr().out
    assert "not measured yet" in out and "recorded runs" not in out
    results.report_target("on the test split", 0.985, 0.985, {**stats, "machines": 2})
    assert "(seeds 0, 1, 2 on 2 machines)" in capsys.readouterr().out
    results.report_target("on the test split", 0.985, 0.985, {**stats, "machines": None})
    assert "(seeds 0, 1, 2; not every run names its machine)" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert results.report_target("on the test split", 0.45, 0.985, stats) is False
    out = capsys.readouterr().out
    assert "smoke profile: a tiny run" in out and "reaches it" not in out
    assert results.report_claim("flips win", False, None) is False
    out = capsys.readouterr().out
    assert "flips win: does not hold in this run." in out and "the claim is about the full run" in out
    assert "not measured" not in out  # a claim without a measured spread says nothing about one


def test_long_stages_announce_their_recorded_minutes(tmp_path, monkeypatch, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"08/cnn": {"lesson": "08", "name": "cnn", "minutes": 5.076,
                                           "machine": "cpu, 2 threads", "date": "2026-11-23"}}))
    monkeypatch.setenv("COURSE_PROFILE", "full")
    message = results.announce_minutes("08", "cnn", "training 28 epochs", path=path)
    assert message == ("training 28 epochs: the recorded full-profile run took 5.1 min (cpu, 2 threads, "
                       "2026-11-23); a slower or busy CPU takes longer") and message in capsys.readouterr().out
    assert "no full-profile time recorded yet" in results.announce_minutes("11", "lite0", path=path)
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert results.announce_minutes("08", "cnn", path=path) == ""


def test_record_refuses_the_names_it_adds_itself(tmp_path, monkeypatch):
    from course_utils import results
    monkeypatch.setenv("COURSE_PROFILE", "full")
    with pytest.raises(ValueError, match="seeds: reserved"):
        results.record("05", "mlp", path=tmp_path / "r.json", seeds=3, test_acc=0.9)
    assert not (tmp_path / "r.json").exists()


def test_describe_recorded_test_for_new_old_and_missing_rows(tmp_path):
    from course_utils import results
    path = tmp_path / "r.json"
    path.write_text(json.dumps({
        "08/cnn": {"lesson": "08", "name": "cnn", "split": "grouped", "test_acc": 0.9384, "test_low": 0.9176,
                   "test_high": 0.9543, "test_n": 668, "date": "2026-11-29"},
        "08/cnn [official split]": {"lesson": "08", "name": "cnn", "split": "official", "test_acc": 0.9573,
                                    "date": "2026-11-23"}}))
    assert results.describe_recorded_test("08", "cnn", "grouped", path) == \
        "93.84 % [91.8, 95.4], n = 668 same-slice groups"
    assert results.describe_recorded_test("08", "cnn", "official", path) == \
        "95.73 % of the test images (recorded before intervals were kept)"
    assert results.describe_recorded_test("05", "mlp", "grouped", path) == "not recorded yet"
