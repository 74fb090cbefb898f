"""Frozen-backbone features, computed once and cached on disk.

For frozen-backbone transfer learning (lesson 10), ``extract_features`` runs the backbone
once over a loader, and ``cached_features`` keeps the result under
``data/cache/features/`` (keyed by the weights' fingerprint) so a linear head trains in
seconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ..data.source import cache_dir
from ..files import UnreadableFileError, atomic_torch_save, dict_with, read_or_explain, torch_load


@torch.no_grad()
def extract_features(backbone: nn.Module, loader, device, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a frozen ``backbone`` over ``loader`` once: ``(features (N, D), labels (N,))``.

    Evaluation mode (batch norm uses its ImageNet statistics, dropout is off) and no
    gradients, so this costs a forward pass only.
    """
    from tqdm.auto import tqdm  # here: only when a bar is shown

    was_training = backbone.training
    backbone.eval().to(device)
    features, labels = [], []
    for x, y in tqdm(loader, desc="extracting features", disable=not progress):
        features.append(backbone(x.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


def weights_fingerprint(module: nn.Module) -> str:
    """A short hash of every tensor in ``module``'s state dict (changes when weights do)."""
    digest = hashlib.sha1()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def feature_cache_path(model_name: str, size: int, split: str) -> Path:
    """``data/cache/features/<model>-<size>px-<split>.pt``."""

    return cache_dir() / "features" / f"{model_name}-{size}px-{split}.pt"


def cached_features(backbone: nn.Module, loader, device, *, model_name: str, size: int,
                    split: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``extract_features`` with a disk cache keyed by model, image size and split.

    The cache file also stores a fingerprint of the backbone's weights and of the images'
    file names; if either differs (fine-tuned weights, a smoke-profile subset) the features
    are computed again and the file replaced.
    """
    path = feature_cache_path(model_name, size, split)
    files = getattr(getattr(loader.dataset, "images", None), "files", None)
    key = {"weights": weights_fingerprint(backbone),
           "files": hashlib.sha1("\n".join(files).encode()).hexdigest() if files else None,
           "n": len(loader.dataset)}
    payload = _read_feature_cache(path)
    if payload is not None and payload["key"] == key:
        return payload["features"], payload["labels"]
    features, labels = extract_features(backbone, loader, device, progress=progress)
    atomic_torch_save({"key": key, "features": features, "labels": labels}, path)
    return features, labels


def _read_feature_cache(path: Path) -> dict | None:
    """A feature cache file's content, or ``None`` (no file, or an unreadable one, which is
    rebuilt: a cache holds nothing that cannot be computed again)."""
    if not path.is_file():
        return None
    try:
        return read_or_explain(path, torch_load, made_by="cached_features", fix="",
                               check=dict_with("key", "features", "labels"))
    except UnreadableFileError as error:
        print(f"Rebuilding the feature cache {path.name}: {error.reason}.")
        return None
