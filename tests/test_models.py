"""Models: registry, shapes, parameter counts, STSTNet's streams, fusion policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmhe.errors import ConfigError
from mmhe.models import (
    EEGTCN,
    RCNA,
    CrossModalAttentionFusion,
    EarlyFusion,
    EEGNet,
    LateFusion,
    MMHENet,
    STSTNet,
    build_model,
    focal_loss,
    list_models,
    model_spec,
)

REGISTRY = [
    "ststnet",
    "mmhe_net",
    "offapexnet",
    "rcna",
    "featref",
    "eeg_tcn",
    "eegnet",
    "physio_mlp",
    "svm",
    "logreg",
    "majority",
    "stratified",
    "early_fusion",
    "late_fusion",
    "stacking",
    "cross_attention",
]


def test_registry_names_and_unknown_name():
    assert list_models() == REGISTRY
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("resnet")


def test_ststnet_parameter_count_matches_paper():
    n = sum(p.numel() for p in STSTNet(n_classes=3).parameters() if p.requires_grad)
    # 3x3 convs 3->3,5,8 (432 + 16) + BatchNorm (32) + linear 400->3 (1,203)
    assert n == 1683
    assert abs(n - 1670) / 1670 < 0.03


def test_mmhe_net_follows_the_papers_figure():
    model = MMHENet(n_classes=3)
    # per stream: 3x3 conv 1->8 (72 + 8) + BatchNorm (16); classifier 6,144 -> 3 (18,435)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == 3 * (72 + 8 + 16) + 6144 * 3 + 3 == 18723
    assert sum(p.numel() for p in MMHENet(n_classes=7).parameters()) == 288 + 6144 * 7 + 7
    assert model.classifier.in_features == 6144  # 24 x 16 x 16
    model.eval()
    x = torch.randn(4, 3, 128, 128)
    stream = model.streams[0]
    assert stream[0](x[:, :1]).shape == (4, 8, 64, 64)  # stride 2, padding 1
    assert stream(x[:, :1]).shape == (4, 8, 32, 32)  # 2 x 2 max-pool
    assert model(x).shape == (4, 3)
    # each stream sees only its own channel: changing u leaves the strain stream unchanged
    changed = x.clone()
    changed[:, 1] += 1.0
    torch.testing.assert_close(model.streams[0](changed[:, :1]), model.streams[0](x[:, :1]))
    assert not torch.allclose(model(changed), model(x))
    assert MMHENet(image_size=28)(torch.randn(2, 3, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize("name", REGISTRY)
def test_every_registry_model_runs_on_its_documented_shape(name):
    spec = model_spec(name)
    rng = np.random.default_rng(0)
    n = 6
    if isinstance(spec.example_shape, dict):
        arrays = {
            m: rng.normal(size=(n, *s)).astype(np.float32) for m, s in spec.example_shape.items()
        }
    else:
        arrays = rng.normal(size=(n, *spec.example_shape)).astype(np.float32)
    shape = {m: a.shape for m, a in arrays.items()} if isinstance(arrays, dict) else arrays.shape
    model = build_model(name, n_classes=3, **spec.shape_kwargs(shape))
    if spec.kind == "torch":
        model.eval()
        if isinstance(arrays, dict):
            inputs = {m: torch.from_numpy(a) for m, a in arrays.items()}
            inputs["present"] = torch.ones(n, len(arrays))
        else:
            inputs = torch.from_numpy(arrays)
        with torch.no_grad():
            logits = model(inputs)
        assert logits.shape == (n, 3)
        assert torch.isfinite(logits).all()
    elif spec.kind == "sklearn":
        y = np.array([0, 1, 1, 0, 1, 0])  # class 2 absent from training
        proba = model.fit(arrays, y).predict_proba(arrays)
        assert proba.shape == (n, 3)
        np.testing.assert_allclose(proba.sum(1), 1.0)
        assert (proba[:, 2] == 0).all()
    else:
        probs = {m: rng.dirichlet(np.ones(3), size=n) for m in model.modalities}
        present = np.ones((n, len(model.modalities)), dtype=bool)
        if name == "stacking":
            model.fit_meta(probs, present, np.array([0, 1, 2, 0, 1, 2]))
        out = model.combine(probs, present, np.full(3, 1 / 3))
        assert out.shape == (n, 3)
        np.testing.assert_allclose(out.sum(1), 1.0)


def test_ststnet_equals_the_papers_three_separate_streams():
    """STSTNet computes its three streams as one 16-channel pass: the paper's layout
    (three conv -> ReLU -> BatchNorm -> max-pool -> dropout streams, concatenated) with
    the same weights gives the same logits, gradients and BatchNorm statistics."""
    torch.manual_seed(0)
    model = STSTNet()
    convs, norms = [], []
    for part in STSTNet.stream_slices():
        conv, norm = (
            torch.nn.Conv2d(3, part.stop - part.start, 3, padding=1),
            torch.nn.BatchNorm2d(part.stop - part.start),
        )
        with torch.no_grad():
            conv.weight.copy_(model.streams.conv.weight[part])
            conv.bias.copy_(model.streams.conv.bias[part])
            norm.weight.uniform_(-1.5, 1.5)  # negative scales too
            norm.bias.normal_()
            model.streams.bn.weight[part] = norm.weight
            model.streams.bn.bias[part] = norm.bias
        convs.append(conv), norms.append(norm)
    x = torch.randn(9, 3, 28, 28)
    y = torch.randint(0, 3, (9,))
    model.eval()  # no dropout; BatchNorm in training mode below
    model.streams.bn.train()
    loss = F.cross_entropy(model(x), y)
    features = torch.cat(
        [
            F.max_pool2d(norm(torch.relu(conv(x))), 3, 3, 1)
            for conv, norm in zip(convs, norms, strict=True)
        ],
        dim=1,
    )
    reference = F.cross_entropy(model.classifier(F.avg_pool2d(features, 2).flatten(1)), y)
    torch.testing.assert_close(loss, reference)
    loss.backward()
    reference.backward()
    grad = model.streams.conv.weight.grad
    for part, conv, norm in zip(STSTNet.stream_slices(), convs, norms, strict=True):
        torch.testing.assert_close(grad[part], conv.weight.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model.streams.bn.running_var[part], norm.running_var)


def test_rcna_attention_is_min_max_normalised():
    model = RCNA(channels=8, pool_size=5)
    stem = model.stem.eval()(torch.randn(4, 3, 28, 28))
    att = model.attention(stem)
    assert att.shape == (4, 1, 5, 5)
    assert (att >= 0).all() and (att <= 1).all()
    assert sum(p.numel() for p in model.parameters()) > 0


def test_eeg_tcn_is_causal():
    model = EEGTCN(n_features=5, hidden=8, depth=3).eval()
    x = torch.randn(2, 10, 5)
    changed = x.clone()
    changed[:, 7:] += 5.0  # change the future after window 6
    out, out_changed = model.blocks(x.transpose(1, 2)), model.blocks(changed.transpose(1, 2))
    torch.testing.assert_close(out[:, :, :7], out_changed[:, :, :7])
    assert not torch.allclose(out[:, :, 7:], out_changed[:, :, 7:])


def test_eegnet_max_norm_constraints_and_short_windows():
    model = EEGNet(n_channels=4, n_samples=64, kernel_length=16)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
        model.spatial.weight.mul_(100)
    model.apply_constraints()
    assert model.classifier.weight.norm(dim=1).max() <= 0.25 + 1e-6
    assert (
        model.spatial.weight.view(model.spatial.weight.shape[0], -1).norm(dim=1).max() <= 1 + 1e-6
    )
    with pytest.raises(ConfigError, match="32 samples"):
        EEGNet(n_channels=4, n_samples=16)


def test_focal_loss_reduces_to_cross_entropy():
    logits, y = torch.randn(20, 3), torch.randint(0, 3, (20,))
    torch.testing.assert_close(focal_loss(logits, y, 0.0), F.cross_entropy(logits, y))
    assert focal_loss(logits, y, 2.0) < F.cross_entropy(logits, y)


@pytest.mark.parametrize("kind", ["early", "cross"])
def test_missing_modality_values_are_ignored(kind):
    """A missing modality's values cannot influence the output (zeros/missing token)."""
    torch.manual_seed(0)
    if kind == "early":
        model = EarlyFusion({"face": 6, "eeg": 4}).eval()
        inputs = {"face": torch.randn(3, 6), "eeg": torch.randn(3, 4)}
    else:
        model = CrossModalAttentionFusion({"face": (1, 8, 8), "eeg": (3, 4)}, d_model=8, heads=2)
        model.eval()
        inputs = {"face": torch.randn(3, 1, 8, 8), "eeg": torch.randn(3, 3, 4)}
    inputs["present"] = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    other = dict(inputs, eeg=inputs["eeg"] * 100 + 7)
    with torch.no_grad():
        a, b = model(inputs), model(other)
    torch.testing.assert_close(a[:2], b[:2])
    assert not torch.allclose(a[2], b[2])


def test_late_fusion_averages_present_modalities():
    fusion = LateFusion({"face": "ststnet", "eeg": "eeg_tcn"})
    probs = {
        "face": np.array([[1.0, 0, 0], [0.2, 0.8, 0], [0, 0, 1]]),
        "eeg": np.array([[0, 1.0, 0], [0, 0, 1.0], [0, 1, 0]]),
    }
    present = np.array([[True, True], [True, False], [False, False]])
    out = fusion.combine(probs, present, prior=np.array([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(out, [[0.5, 0.5, 0], [0.2, 0.8, 0], [0.5, 0.25, 0.25]])


@pytest.mark.parametrize("n_windows", [1, 3, 8, 21])
def test_eeg_tcn_evaluates_blocks_only_where_needed_with_equal_outputs(n_windows):
    """The pruned forward (blocks only where the last window's receptive field reaches
    data) gives the full evaluation's logits and gradients (float64: rounding only)."""
    torch.manual_seed(n_windows)
    model = EEGTCN(n_features=12, hidden=16, depth=6, dropout=0.0).double()
    x = torch.randn(5, n_windows, 12, dtype=torch.float64)
    pruned, full = model(x), model.full_forward(x)
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-12)
    grads = []
    for forward in (model.forward, model.full_forward):
        model.zero_grad()
        forward(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    model32 = EEGTCN(n_features=12, hidden=16).eval()
    x32 = x.float()
    torch.testing.assert_close(model32(x32), model32.full_forward(x32), rtol=1e-5, atol=1e-6)


def test_eeg_tcn_plan_skips_dead_blocks():
    from mmhe.models.eeg import plan_blocks

    plans = plan_blocks(8, [1, 2, 4, 8, 16, 32], 3)
    assert [p.outputs for p in plans] == [(1, 3, 5, 7), (3, 7), (7,), (7,), (7,), (7,)]
    assert plans[0].inputs == tuple(range(8)) and plans[0].conv1_taps is None
    # the full model evaluates 6 blocks x 8 windows; the plan 4 + 2 + 1 + 1 + 1 + 1
    assert sum(len(p.outputs) for p in plans) == 10
