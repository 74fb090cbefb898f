"""Lesson 11's fine-tuning recipe and longer variants, on the grouped split, beyond the CPU budget.

Lesson 11 must finish in about ten minutes on a 2-core CPU, so its schedule is short. This
script asks what the same network reaches when that limit is lifted: more epochs, a 192-px
phase, every stage trained, stronger augmentation. It trains one recipe per call (on a GPU if
there is one: each recipe takes minutes there and hours on a laptop CPU) and appends one JSON
line to ``results/lesson11_recipes.jsonl``, which lesson 11 prints as a table.

    python scripts/lesson11_recipes.py prepare data192.pkl     # decode the grouped split once
    python scripts/lesson11_recipes.py run all20 --data data192.pkl [--device cuda]

``prepare`` decodes every image of the grouped split at 192 px with the course's own decoder
and stores it as WebP (quality 90) so that the file is small enough to copy to another machine
(about 40 MB); the recorded runs read their images from such a file, so they saw a lossy copy.
Smaller phases are resized from the 192-px images. Each run selects nothing on the test split:
flip averaging is reported both ways, and the validation accuracy says which one the lesson's
rule (use flips if they do not lower validation accuracy) would pick.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from course_utils.data.cache import ImageSet
from course_utils.data.images import load_image, model_pixels
from course_utils.data.loaders import MRIDataset, make_loader, train_augmentation
from course_utils.data.pipeline import serve
from course_utils.data.source import CLASSES, get_dataset
from course_utils.data.splits import read_grouped_split
from course_utils.models import pretrained as P
from course_utils.training import fit, predict, score_test

RESULTS = Path(__file__).resolve().parents[1] / "results" / "lesson11_recipes.jsonl"
SIZE = 192
BATCH_SIZE = 32

# (image size, epochs) per phase; `frozen`: model.features[:frozen] stay frozen (lesson 11: 4).
RECIPES: dict[str, dict] = {
    "standard": dict(phases=[(128, 2), (160, 3)], frozen=4),          # lesson 11 as it runs
    "long": dict(phases=[(128, 4), (160, 4), (192, 3)], frozen=3),     # lesson 11's long run
    "frozen3_20": dict(phases=[(128, 5), (160, 5), (192, 10)], frozen=3),
    "all20": dict(phases=[(128, 5), (160, 5), (192, 10)], frozen=0),
    "all20_seed1": dict(phases=[(128, 5), (160, 5), (192, 10)], frozen=0, seed=1),
    "all20_lowlr": dict(phases=[(128, 5), (160, 5), (192, 10)], frozen=0, lr=3e-4, head_lr=3e-3),
    "all20_strongaug": dict(phases=[(128, 5), (160, 5), (192, 10)], frozen=0,
                            aug=dict(shift=0.1, scale=0.1, brightness=0.2, contrast=0.2)),
    "all40": dict(phases=[(128, 10), (160, 10), (192, 20)], frozen=0),
}


def prepare(path: Path, quality: int = 90) -> None:
    """Decode the grouped split (excluded images left out) at 192 px and store it as WebP."""
    root = get_dataset()
    data = {"relpath": [], "split": [], "webp": []}
    for row in read_grouped_split():
        if row["split"] == "excluded":
            continue
        pixels = model_pixels(load_image(root / row["relpath"]), SIZE)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="WEBP", quality=quality)
        data["relpath"].append(row["relpath"])
        data["split"].append(row["split"])
        data["webp"].append(buffer.getvalue())
    with open(path, "wb") as f:
        pickle.dump(data, f)
    print(f"{len(data['webp'])} images, {sum(map(len, data['webp'])) / 1e6:.1f} MB -> {path}")


def splits_at(data: dict, images: torch.Tensor, size: int) -> list[ImageSet]:
    """The grouped (train, val, test) at ``size`` px, resized from the 192-px images."""
    if size != SIZE:
        images = F.interpolate(images[:, None].float(), size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False)[:, 0].round().clamp(0, 255).to(torch.uint8)
    labels = torch.tensor([CLASSES.index(p.split("/")[1]) for p in data["relpath"]])
    whole = ImageSet(images, labels, list(data["relpath"]))
    split = np.array(data["split"])
    return [whole.subset(np.flatnonzero(split == name)) for name in ("train", "val", "test")]


def run(name: str, data_path: Path, device: torch.device) -> dict:
    """Train recipe ``name`` and score it on the grouped validation and test splits."""
    recipe = RECIPES[name]
    seed = recipe.get("seed", 0)
    with open(data_path, "rb") as f:
        data = pickle.load(f)
    images = torch.from_numpy(np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("L")) for b in data["webp"]]))
    torch.manual_seed(seed)
    model, info = P.pretrained_backbone("efficientnet_lite0", n_classes=len(CLASSES))
    mean, std = info["mean"][0], info["std"][0]
    for p in model.features[:recipe["frozen"]].parameters():
        p.requires_grad_(False)
    lr, head_lr = recipe.get("lr", 1e-3), recipe.get("head_lr", 1e-2)
    optimizer = torch.optim.AdamW(P.param_groups(model, lr, head_lr), weight_decay=0.01)
    n_train = len(splits_at(data, images, SIZE)[0])
    steps = sum(e for _, e in recipe["phases"]) * math.ceil(n_train / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[lr, head_lr], total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    evaluation = lambda s: serve(s, batch_size=BATCH_SIZE, eval_batch_size=128, channels=3, mean=mean, std=std)

    def training(s: ImageSet):
        augmentation = train_augmentation(seed=seed, **recipe.get("aug", {}))
        dataset = MRIDataset(s, transform=augmentation, channels=3, mean=mean, std=std)
        return make_loader(dataset, batch_size=BATCH_SIZE, shuffle=True, seed=seed)

    start, val_curve = time.time(), []
    for size, epochs in recipe["phases"]:
        train, val, test = splits_at(data, images, size)
        history = fit(model, training(train), evaluation(val), epochs=epochs, optimizer=optimizer, device=device,
                      loss_fn=loss_fn, scheduler=schedule, scheduler_step="batch", channels_last=True, progress=False)
        val_curve += [round(float(v), 4) for v in history.val_acc]
    result = {"recipe": name, **recipe, "seed": seed, "device": torch.cuda.get_device_name(device)
              if device.type == "cuda" else platform.processor() or "cpu",
              "minutes": round((time.time() - start) / 60, 2), "val_acc_per_epoch": val_curve}
    for flips in (False, True):
        val_probs, val_labels = predict(model, evaluation(val), device, flips=flips, channels_last=True)
        test_probs, test_labels = predict(model, evaluation(test), device, flips=flips, channels_last=True)
        score = score_test(test_labels, test_probs.argmax(1), test.files, split="grouped")
        result["flip" if flips else "plain"] = {
            "val": round(float((val_probs.argmax(1) == val_labels).mean()), 4), "test": round(score.accuracy, 4),
            "low": round(score.low, 4), "high": round(score.high, 4), "n": score.n_groups,
            "image_acc": round(score.image_accuracy, 4), "recalls": {k: round(v, 3) for k, v in score.recalls.items()}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="decode the grouped split at 192 px into one WebP file")
    prep.add_argument("path", type=Path)
    go = commands.add_parser("run", help="train one recipe and append its result to " + str(RESULTS.name))
    go.add_argument("recipe", choices=sorted(RECIPES))
    go.add_argument("--data", type=Path, required=True)
    go.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    go.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.path)
        return
    result = run(args.recipe, args.data, torch.device(args.device))
    line = json.dumps(result)
    print(line)
    with open(args.results, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
