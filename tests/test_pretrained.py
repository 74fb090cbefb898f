"""Tests of course_utils.models.pretrained: offline ImageNet weights, torchvision's cache, features."""

from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from course_utils.models import pretrained as P
from course_utils.training import ModelCard, features, load_model, predict, save_checkpoint

ESPRESSO, CUP = 967, 968


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a host name or open a connection fails at once."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def coffee_input():
    skimage_data = pytest.importorskip("skimage.data")
    return P.lite0_input(skimage_data.coffee())


def lite0_probs(x, same_padding=True):
    model = P.efficientnet_lite0(pretrained=True, same_padding=same_padding).eval()
    with torch.no_grad():
        return model(x).softmax(1)[0]


@pytest.fixture(scope="module")
def coffee_probs(coffee_input):
    return lite0_probs(coffee_input, same_padding=True)


def test_lite0_weights_come_from_the_installed_package():
    path = P.lite0_weights_path()
    assert path.name == P.LITE0_FILE and path.stat().st_size > 10_000_000


def test_conv2d_same_matches_tensorflow_padding():
    # TensorFlow "SAME", stride 2 on 224 px: output 112, one pixel of padding, at the end.
    assert P.Conv2dSame.same_padding(224, 3, 2, 1) == (0, 1)
    assert P.Conv2dSame.same_padding(225, 3, 2, 1) == (1, 1)
    assert P.Conv2dSame.same_padding(224, 5, 2, 1) == (1, 2)
    torch.manual_seed(0)
    conv = P.Conv2dSame(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 8, 8)
    expected = nn.functional.conv2d(nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), expected)
    assert conv(torch.randn(1, 2, 7, 7)).shape[-1] == 4


def test_lite0_skeleton_is_b0_without_se_and_swish():
    from torchvision.ops.misc import SqueezeExcitation

    model = P.efficientnet_lite0_skeleton()
    kinds = {type(m) for m in model.modules()}
    assert SqueezeExcitation not in kinds and nn.SiLU not in kinds and nn.ReLU6 in kinds
    assert all(m.eps == P.LITE0_BN_EPS for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    strided = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert len(strided) == 5 and all(isinstance(m, P.Conv2dSame) for m in strided)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_state_dict_mapping_checks_shapes():
    source = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    assert list(P.map_state_dict_in_order(source, {"x": torch.ones(2, 3), "y": torch.ones(4)})) == ["x", "y"]
    with pytest.raises(ValueError, match="shape mismatch"):
        P.map_state_dict_in_order(source, {"x": torch.ones(3, 2), "y": torch.ones(4)})
    with pytest.raises(ValueError):
        P.map_state_dict_in_order(source, {"x": torch.ones(2, 3)})


def test_lite0_recognises_the_coffee_cup(coffee_probs):
    probs = coffee_probs
    top5 = [k for k, _ in P.imagenet_top5(probs)]
    assert ESPRESSO in top5 or CUP in top5
    assert top5[0] == ESPRESSO  # the weights and the skeleton agree: a confident, right answer
    assert probs[ESPRESSO] > 0.5


def test_symmetric_padding_shifts_the_prediction(coffee_input, coffee_probs):
    same = coffee_probs
    symmetric = lite0_probs(coffee_input, same_padding=False)
    assert (same - symmetric).abs().max() > 1e-3
    assert same[ESPRESSO] > symmetric[ESPRESSO]


def test_pretrained_backbone_lite0_has_a_new_head():
    model, info = P.pretrained_backbone("efficientnet_lite0", n_classes=4)
    assert info["name"] == "efficientnet_lite0" and P.LITE0_PACKAGE in info["weights"]
    assert info["mean"] == P.LITE0_MEAN and info["std"] == P.LITE0_STD and info["features"] == 1280
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 4)
        assert P.backbone_of(model)(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)


def test_torchvision_checkpoint_is_read_from_torch_home_offline(tmp_path, monkeypatch, no_network):
    from torchvision.models import resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    path = P.torchvision_checkpoint_path("resnet18")
    assert path == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    model, info = P.pretrained_backbone("resnet18", n_classes=4)
    assert info["name"] == "resnet18" and str(path) in info["weights"] and info["mean"] == P.IMAGENET_MEAN
    loaded = model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert model.fc.out_features == 4


def test_missing_checkpoint_offline_raises_a_clear_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(P.PretrainedWeightsUnavailable) as error:
        P.pretrained_backbone("efficientnet_b0")
    message = str(error.value)
    assert "efficientnet_b0" in message and str(P.torchvision_checkpoint_path("efficientnet_b0")) in message
    assert "efficientnet_lite0" in message  # it names the offline alternative


def test_substitute_is_announced(tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, info = P.pretrained_backbone("resnet18", substitute="efficientnet_lite0")
    assert info["requested"] == "resnet18" and info["name"] == "efficientnet_lite0"
    assert "substitute 'efficientnet_lite0'" in capsys.readouterr().out
    with pytest.raises(ValueError):
        P.pretrained_backbone("vgg19")


class _Images:
    def __init__(self, n):
        self.files = [f"img{i}.jpg" for i in range(n)]


class _Dataset(torch.utils.data.TensorDataset):
    def __init__(self, x, y):
        super().__init__(x, y)
        self.images = _Images(len(y))


def test_extract_features_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    torch.manual_seed(0)
    x, y = torch.randn(10, 3, 8, 8), torch.arange(10) % 4
    loader = torch.utils.data.DataLoader(_Dataset(x, y), batch_size=4)
    backbone = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    backbone.train()
    feats, labels = features.extract_features(backbone, loader, "cpu", progress=False)
    assert feats.shape == (10, 5) and torch.equal(labels, y)
    assert backbone.training  # mode restored
    with torch.no_grad():
        assert torch.allclose(feats, backbone.eval()(x), atol=1e-6)  # computed in eval mode

    path = features.feature_cache_path("toy", 8, "train")
    assert path == tmp_path / "cache" / "features" / "toy-8px-train.pt"
    first = features.cached_features(backbone, loader, "cpu", model_name="toy", size=8, split="train", progress=False)
    assert path.is_file() and torch.allclose(first[0], feats)
    stamp = path.stat().st_mtime_ns
    again = features.cached_features(backbone, loader, "cpu", model_name="toy", size=8, split="train", progress=False)
    assert path.stat().st_mtime_ns == stamp and torch.equal(again[0], first[0])  # read, not recomputed
    with torch.no_grad():
        backbone[0].weight.add_(1.0)  # new weights -> the stale cache is replaced
    changed = features.cached_features(backbone, loader, "cpu", model_name="toy", size=8, split="train", progress=False)
    assert not torch.allclose(changed[0], first[0])


@pytest.mark.parametrize("damage", ["truncated", "a list", "no key"])
def test_a_damaged_feature_cache_is_rebuilt(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    torch.manual_seed(0)
    x, y = torch.randn(10, 3, 8, 8), torch.arange(10) % 4
    loader = torch.utils.data.DataLoader(_Dataset(x, y), batch_size=4)
    backbone = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    first = features.cached_features(backbone, loader, "cpu", model_name="toy", size=8, split="train", progress=False)
    path = features.feature_cache_path("toy", 8, "train")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        torch.save([1, 2] if damage == "a list" else {"features": first[0]}, path)
    again = features.cached_features(backbone, loader, "cpu", model_name="toy", size=8, split="train", progress=False)
    assert torch.equal(again[0], first[0])
    assert f"Rebuilding the feature cache {path.name}" in capsys.readouterr().out
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_param_groups_split_head_and_skip_frozen():
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    P.replace_head(model, 4)
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    body, head = P.param_groups(model, 1e-3, 1e-2)
    assert (body["lr"], head["lr"]) == (1e-3, 1e-2)
    assert {id(p) for p in head["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert id(model.conv1.weight) not in {id(p) for p in body["params"]}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in (body, head) for p in g["params"]) == trainable


def test_predict_with_flips_averages_image_and_mirror():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    x, y = torch.randn(5, 2, 3, 3), torch.arange(5) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    probs, labels = predict(model, loader, "cpu", flips=True)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-6) and (labels == y.numpy()).all()


def test_load_model_rebuilds_a_backbone_from_its_card_alone(tmp_path):
    torch.manual_seed(0)
    model = P.build_backbone("resnet18", n_classes=4).eval()
    card = ModelCard(architecture="resnet18", config={"n_classes": 4}, size=32, channels=3, mean=0.5, std=0.25)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, metric="val_loss", value=0.1, card=card)
    loaded, loaded_card = load_model(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded_card == card and not loaded.training


def test_load_model_reads_a_checkpoint_saved_before_model_cards(tmp_path):
    torch.manual_seed(0)
    model = P.build_backbone("resnet18", n_classes=4).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, metric="val_loss", value=0.1,
                    meta={"name": "resnet18", "n_classes": 4, "size": 32, "flip_average": True, "test_acc": 0.9})
    loaded, card = load_model(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert (card.architecture, card.size, card.flips, card.extra) == ("resnet18", 32, True, {"test_acc": 0.9})
