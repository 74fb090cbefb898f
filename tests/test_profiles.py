"""Tests for course_utils.profiles (budgets, seeds, device) and course_utils.results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from course_utils import profiles, results


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
    results.record("08", "cnn", path=path, test_acc=0.97)
    table = json.loads(path.read_text())
    assert list(table) == ["05/mlp", "08/cnn"]
    assert table["05/mlp"]["test_acc"] == 0.92 and "minutes" not in table["05/mlp"]
    markdown = results.to_markdown(table)
    assert markdown.index("## Lesson 05") < markdown.index("## Lesson 08")
    lesson05, lesson08 = markdown.split("## Lesson 08")
    assert "| model / run | official test acc. | machine | date |" in lesson05  # no minutes: none recorded
    assert "| mlp | 0.92 |" in lesson05 and "cnn" not in lesson05
    assert "| cnn | 0.97 |" in lesson08 and lesson08.count("\n|") == 3  # header, rule, one row
