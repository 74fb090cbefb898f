"""scripts/lesson11_recipes.py: the recorded runs match the recipes the script defines, and its
resizing keeps the split and the labels."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("lesson11_recipes", ROOT / "scripts" / "lesson11_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorded_runs_are_the_scripts_recipes():
    script = load_script()
    rows = [json.loads(line) for line in open(ROOT / "results" / "lesson11_recipes.jsonl")]
    assert {r["recipe"] for r in rows} == set(script.RECIPES)
    for r in rows:
        recipe = script.RECIPES[r["recipe"]]
        assert [tuple(p) for p in r["phases"]] == recipe["phases"]
        assert r["frozen"] == recipe["frozen"] and r["seed"] == recipe.get("seed", 0)
        assert len(r["val_acc_per_epoch"]) == sum(e for _, e in recipe["phases"])
        for key in ("plain", "flip"):
            s = r[key]
            assert s["low"] <= s["test"] <= s["high"] and s["n"] == 668


def test_splits_at_resizes_and_keeps_labels():
    script = load_script()
    files = ["Training/glioma/a.jpg", "Testing/notumor/b.jpg", "Training/pituitary/c.jpg"]
    data = {"relpath": files, "split": ["train", "test", "val"]}
    images = torch.full((3, 192, 192), 200, dtype=torch.uint8)
    train, val, test = script.splits_at(data, images, 128)
    assert train.images.shape == (1, 128, 128) and int(train.images.max()) == 200 == int(train.images.min())
    assert (train.files, val.files, test.files) == ([files[0]], [files[2]], [files[1]])
    assert [int(s.labels[0]) for s in (train, val, test)] == [0, 3, 2]
