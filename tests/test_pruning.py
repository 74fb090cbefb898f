"""Magnitude masks, retraining that keeps zeros zero, channel pruning, size and latency."""

from __future__ import annotations

import io
import zlib

import pytest
import torch
from torch import nn

from course_utils.data import ImageSet, MRIDataset, make_loader
from course_utils.models import SmallCNN
from course_utils.training.pruning import (apply_masks, channel_scores, csr_bytes, fine_tune,
                                           iterative_schedule, kept_channels, keep_masks_applied,
                                           magnitude_masks, measure_latency, median_time_ms,
                                           model_size_bytes, prunable_weights, prune_channels,
                                           prune_iteratively, prune_one_shot, shrink_channels,
                                           silence_channels, sparsity_report)


def tiny_cnn(seed: int = 0, widths=(4, 6, 8), hidden: int = 5) -> SmallCNN:
    """A small SmallCNN with random (not freshly initialised) batch-norm statistics, so that
    batch norm is not close to the identity and channel surgery is really tested."""
    torch.manual_seed(seed)
    model = SmallCNN(widths=widths, hidden=hidden)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 2, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[0.1, -0.9, 0.3, 0.0, 0.5], [-0.2, 0.8, -0.05, 0.7, -0.6]]))
            self.b.weight.copy_(torch.tensor([[0.4, -0.25]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_masks_remove_exactly_the_smallest_magnitudes_by_hand():
    model = TwoLayers()
    # all 12 magnitudes sorted: 0.0 0.05 0.1 0.2 0.25 0.3 0.4 0.5 0.6 0.7 0.8 0.9
    masks = magnitude_masks(model, 0.25, scope="global")  # 3 of 12: 0.0, 0.05, 0.1
    assert masks["a.weight"].tolist() == [[False, True, True, False, True], [True, True, False, True, True]]
    assert masks["b.weight"].tolist() == [[True, True]]
    masks = magnitude_masks(model, 0.5, scope="global")   # 6 of 12: up to 0.3
    assert masks["a.weight"].tolist() == [[False, True, False, False, True], [False, True, False, True, True]]
    assert masks["b.weight"].tolist() == [[True, False]]
    # per layer: 2 of a's 10 (0.0, 0.05) and round(0.25 * 2) = 0 of b's 2 (round half to even)
    per_layer = magnitude_masks(model, 0.25, scope="layer")
    assert (~per_layer["a.weight"]).sum() == 2 and per_layer["b.weight"].all()
    assert not per_layer["a.weight"][0, 3] and not per_layer["a.weight"][1, 2]


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 0.9])
def test_requested_sparsity_is_hit_exactly(scope, sparsity):
    model = tiny_cnn()
    masks = prune_one_shot(model, sparsity, scope)
    weights = prunable_weights(model)
    report = sparsity_report(model)
    if scope == "global":
        assert report.zeros == round(sparsity * report.weights)
    else:
        for name, w in weights.items():
            assert int((w == 0).sum()) == round(sparsity * w.numel()), name
    for name, w in weights.items():
        assert torch.equal(w == 0, ~masks[name])  # zeros exactly where the mask says


def test_global_pruning_removes_the_smallest_magnitudes_everywhere():
    model = tiny_cnn()
    before = torch.cat([w.detach().abs().flatten() for w in prunable_weights(model).values()])
    masks = magnitude_masks(model, 0.6)
    kept = torch.cat([m.flatten() for m in masks.values()])
    assert before[~kept].max() <= before[kept].min()


def test_bad_arguments_raise():
    model = tiny_cnn()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            magnitude_masks(model, bad)
        with pytest.raises(ValueError):
            kept_channels(model, bad)
        with pytest.raises(ValueError):
            iterative_schedule(bad, 3)
    with pytest.raises(ValueError):
        magnitude_masks(model, 0.5, scope="everything")
    with pytest.raises(ValueError):
        iterative_schedule(0.5, 0)
    with pytest.raises(ValueError):
        channel_scores(model, score="random")
    with pytest.raises(TypeError):
        prune_channels(nn.Sequential(nn.Conv2d(1, 2, 3)), 0.5)
    with pytest.raises(ValueError):
        measure_latency(model, torch.zeros(1, 1, 16, 16), repeats=0)


def test_iterative_schedule_and_nested_masks():
    schedule = iterative_schedule(0.9, 2)
    assert schedule[-1] == 0.9 and len(schedule) == 2
    assert schedule[0] == pytest.approx(1 - 0.1 ** 0.5)  # each round keeps the same share
    assert iterative_schedule(0.5, 1) == [0.5]
    model, seen, retrained = tiny_cnn(), [], []
    masks = prune_iteratively(model, iterative_schedule(0.8, 3),
                              after_prune=lambda step, s, m: seen.append(
                                  (step, s, {n: (w != 0).clone() for n, w in prunable_weights(m).items()})),
                              after_retrain=lambda step, s, m: retrained.append(step))
    assert [s for _, s, _ in seen] == pytest.approx(iterative_schedule(0.8, 3))
    assert retrained == [1, 2, 3]
    for (_, _, earlier), (_, _, later) in zip(seen, seen[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any()  # once pruned, always pruned
    # without retraining, iterative magnitude pruning is exactly one-shot pruning
    one_shot = prune_one_shot(tiny_cnn(), 0.8)
    assert all(torch.equal(masks[name], one_shot[name]) for name in masks)
    for bad in ([], [0.5, 0.3], [0.3, 1.0]):
        with pytest.raises(ValueError):
            prune_iteratively(tiny_cnn(), bad)


def small_loader(n: int = 16, size: int = 16) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=generator),
                      torch.arange(n) % 4, [f"x{i}" for i in range(n)])
    return make_loader(MRIDataset(images, mean=0.5, std=0.25), batch_size=8, shuffle=True, seed=0)


def test_fine_tuning_keeps_pruned_weights_at_zero_and_changes_the_others():
    model = tiny_cnn()
    masks = prune_one_shot(model, 0.7)
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    history = fine_tune(model, masks, small_loader(), epochs=2, device="cpu", lr=1e-2)
    assert len(history) == 2
    for name, w in prunable_weights(model).items():
        assert (w[~masks[name]] == 0).all(), name           # still exactly zero
        assert not torch.equal(w[masks[name]], before[name][masks[name]]), name  # the rest learned
    assert sparsity_report(model).sparsity == pytest.approx(0.7, abs=1e-3)
    # the hook is removed afterwards: a later plain step may move the pruned weights again
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for w in prunable_weights(model).values():
        w.grad = torch.ones_like(w)
    optimizer.step()
    assert sparsity_report(model).zeros == 0


def test_apply_masks_zeroes_exactly_the_masked_weights():
    model = TwoLayers()
    before = model.a.weight.detach().clone()
    masks = {"a.weight": before.abs() > 0.25}
    apply_masks(model, masks)
    assert torch.equal(model.a.weight, torch.where(before.abs() > 0.25, before, torch.zeros_like(before)))
    assert torch.equal(model.b.weight, torch.tensor([[0.4, -0.25]]))  # layers without a mask are untouched


def test_keep_masks_applied_hook_can_be_removed():
    model = TwoLayers()
    masks = magnitude_masks(model, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = keep_masks_applied(optimizer, model, masks)
    model(torch.ones(3, 5)).sum().backward()
    optimizer.step()
    assert sparsity_report(model).zeros == 6
    handle.remove()
    optimizer.step()
    assert sparsity_report(model).zeros < 6


def test_channel_pruning_equals_the_silenced_dense_model():
    model = tiny_cnn(widths=(4, 6, 8))
    keep = kept_channels(model, 0.5)
    assert [len(k) for k in keep] == [2, 3, 4]
    small = shrink_channels(model, keep)
    assert small.config["widths"] == (2, 3, 4)
    dense = silence_channels(model, keep)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(small(x), dense(x), atol=1e-5)
        assert not torch.allclose(small(x), model(x), atol=1e-3)  # something was removed
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    # the surgery by hand: rows = kept filters, columns = the previous block's kept channels
    assert torch.equal(small.features[1][0].weight, model.features[1][0].weight[keep[1]][:, keep[0]])
    assert torch.equal(small.features[2][1].running_var, model.features[2][1].running_var[keep[2]])
    assert torch.equal(small.head[2].weight, model.head[2].weight[:, keep[2]])
    assert torch.equal(small.head[5].weight, model.head[5].weight)
    # the kept filters are the ones with the largest L1 norms
    norms = model.features[1][0].weight.detach().abs().sum(dim=(1, 2, 3))
    assert norms[keep[1]].min() >= norms[[c for c in range(6) if c not in keep[1].tolist()]].max()


def test_channel_pruning_by_batch_norm_scale_and_without_hidden_layer():
    torch.manual_seed(1)
    model = SmallCNN(widths=(5, 7), hidden=0).eval()
    with torch.no_grad():
        model.features[0][1].weight.copy_(torch.tensor([0.1, -3.0, 0.5, 2.0, -0.2]))
    keep = kept_channels(model, 0.4, score="bn")
    assert keep[0].tolist() == [1, 2, 3]
    small = prune_channels(model, 0.4, score="bn")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(small(x), silence_channels(model, keep)(x), atol=1e-5)
    assert kept_channels(model, 0.99)[0].numel() == 1  # every block keeps at least one channel


def test_csr_and_model_sizes():
    w = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    assert csr_bytes(w) == 3 * (4 + 4) + (2 + 1) * 4
    assert csr_bytes(torch.zeros(4, 2, 3, 3)) == 5 * 4
    model = tiny_cnn()
    sizes = model_size_bytes(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert sizes["file"] == len(buffer.getvalue())
    assert sizes["zipped"] == len(zlib.compress(buffer.getvalue()))
    raw = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    weights = prunable_weights(model)
    rows = sum(w.shape[0] + 1 for w in weights.values())
    n_weights = sum(w.numel() for w in weights.values())
    assert sizes["csr"] == raw + n_weights * 4 + rows * 4  # dense: 8 bytes per weight instead of 4
    prune_one_shot(model, 0.9)
    pruned = model_size_bytes(model)
    assert pruned["file"] == sizes["file"]  # zeros still take four bytes each in the file
    assert pruned["zipped"] < sizes["zipped"] and pruned["csr"] < raw


def test_latency_helpers_return_positive_times_and_restore_state():
    calls = []
    assert median_time_ms(lambda: calls.append(1), repeats=5, warmup=2) >= 0
    assert len(calls) == 7
    model = tiny_cnn().train()
    threads = torch.get_num_threads()
    latency = measure_latency(model, torch.randn(2, 1, 32, 32), repeats=3, warmup=1, threads=1)
    assert latency > 0
    assert model.training and torch.get_num_threads() == threads


def test_interleaved_latency_times_in_rounds_and_keeps_the_fastest(monkeypatch):
    """Every round times every model in turn, and each model keeps its fastest round."""
    from course_utils.training import pruning

    order, scripted = [], {"a": [30.0, 10.0, 20.0], "b": [5.0, 50.0, 7.0]}

    def fake(model, x, repeats, warmup, threads):
        order.append(model)
        return scripted[model].pop(0)

    monkeypatch.setattr(pruning, "measure_latency", fake)
    result = pruning.interleaved_latency({"a": "a", "b": "b"}, torch.zeros(1), rounds=3)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert result == {"a": 10.0, "b": 5.0}
    with pytest.raises(ValueError, match="rounds"):
        pruning.interleaved_latency({"a": "a"}, torch.zeros(1), rounds=0)
