"""The fused STSTNet trainer (engine="fused"): one step equals F ordinary STSTNets, a
fold's result does not depend on its group, batches are a plain loop's, Adam per fold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmhe.errors import ConfigError
from mmhe.evaluation import loso, run_folds
from mmhe.evaluation.fused_block import MultiFoldSTSTNet
from mmhe.evaluation.fused_ststnet import (
    _StackedAdam,
    epoch_permutation,
    shared_batches,
)
from mmhe.models import STSTNet

N_PEOPLE, PER_PERSON = 8, 12


def _face(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(N_PEOPLE), PER_PERSON)
    y = np.concatenate([rng.permutation(np.arange(PER_PERSON) % 3) for _ in range(N_PEOPLE)])
    face = rng.normal(size=(y.size, 3, 28, 28)).astype(np.float32)
    for c in range(3):
        face[y == c, 1, 3 + 8 * c : 9 + 8 * c, 8:20] += 1.5
    return face, y, groups


X, Y, GROUPS = _face()
FOLDS = list(loso(GROUPS))


def _standard_step(models, x, y, row_mask, keep, mean, std):
    """Loss of F ordinary STSTNets, each on its rows, with the given dropout masks."""
    total = 0.0
    for f, model in enumerate(models):
        rows = row_mask[:, f].bool()
        xn = (x[rows] - mean[f].view(1, -1, 1, 1)) / std[f].view(1, -1, 1, 1)
        mask = keep[rows][:, :, :, f, :].permute(0, 3, 1, 2)
        hook = model.streams.drop.register_forward_hook(lambda mod, inp, out, m=mask: inp[0] * m)
        model.train()
        total = total + F.cross_entropy(model(xn), y[rows])
        hook.remove()
    return total


def test_fused_step_equals_separate_ststnets():
    """Loss, every gradient and the BatchNorm running statistics of the fused multi-fold
    step equal those of F ordinary STSTNets (negative BN scales, per-fold input
    normalisation, overlapping fold rows, uneven chunks)."""
    n_folds, rows = 3, 37
    models = []
    for f in range(n_folds):
        torch.manual_seed(f)
        model = STSTNet()
        with torch.no_grad():
            model.streams.bn.weight.uniform_(-1.5, 1.5)
            model.streams.bn.bias.normal_()
        models.append(model)
    multi = MultiFoldSTSTNet.from_models(models)
    torch.manual_seed(0)
    x = torch.randn(rows, 3, 28, 28) * 2 + 0.5
    y = torch.randint(0, 3, (rows,))
    row_mask = torch.zeros(rows, n_folds)
    row_mask[:30, 0] = 1
    row_mask[5:, 1] = 1
    row_mask[::2, 2] = 1
    keep = (torch.rand(rows, 10, 10, n_folds, 16) > 0.5).float() * 2
    mean, std = torch.randn(n_folds, 3), torch.rand(n_folds, 3) + 0.5
    loss = multi.training_loss(x, y, row_mask, keep, mean, std, chunk=7)
    loss.backward()
    reference = _standard_step(models, x, y, row_mask, keep, mean, std)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    expected = {
        "conv_weight": lambda m: m.streams.conv.weight,
        "conv_bias": lambda m: m.streams.conv.bias,
        "bn_weight": lambda m: m.streams.bn.weight,
        "bn_bias": lambda m: m.streams.bn.bias,
        "fc_weight": lambda m: m.classifier.weight,
        "fc_bias": lambda m: m.classifier.bias,
    }
    for name, get in expected.items():
        grad = torch.stack([get(m).grad for m in models])
        got = getattr(multi, name).grad
        np.testing.assert_allclose(got.numpy(), grad.numpy(), atol=2e-5 * grad.abs().max().item())
    after = MultiFoldSTSTNet.from_models(models)
    np.testing.assert_allclose(multi.running_mean.numpy(), after.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(multi.running_var.numpy(), after.running_var.numpy(), rtol=1e-5)
    back = MultiFoldSTSTNet.from_models(models).to_models()
    for a, b in zip(models, back, strict=True):
        a.eval(), b.eval()
        torch.testing.assert_close(a(x[:4]), b(x[:4]))


def test_fused_grouping_gives_the_same_predictions_and_no_test_leak():
    """A fold's predictions do not depend on the folds sharing its group (every random
    choice is keyed by the fold); changing the other test samples of fold 0 leaves its
    first prediction unchanged (early stopping on training participants only)."""
    kw = {"epochs": 3, "lr": 5e-3, "batch_size": 16, "seed": 3, "engine": "fused"}
    together = run_folds("ststnet", X, Y, GROUPS, FOLDS[:4], folds_per_group=4, **kw)
    alone = run_folds("ststnet", X, Y, GROUPS, FOLDS[:4], folds_per_group=1, **kw)
    probs = [c for c in together if c.startswith("prob_")]
    np.testing.assert_allclose(together[probs].to_numpy(), alone[probs].to_numpy(), atol=1e-4)
    assert together.attrs["settings"]["engine"] == "fused"
    x, y = X.copy(), Y.copy()
    kw |= {"early_stopping": True, "patience": 2}
    before = run_folds("ststnet", x, y, GROUPS, FOLDS[:2], **kw)
    others = FOLDS[0].test_idx[1:]
    x[others] = x[others] * 50 + 9
    y[others] = (y[others] + 1) % 3
    after = run_folds("ststnet", x, y, GROUPS, FOLDS[:2], **kw)
    np.testing.assert_allclose(before[probs].iloc[0], after[probs].iloc[0], atol=1e-6)
    with pytest.raises(ConfigError, match="STSTNet on the CPU only"):
        run_folds("offapexnet", X, Y, GROUPS, FOLDS[:1], engine="fused")


def test_stacked_adam_equals_separate_torch_adams():
    torch.manual_seed(0)
    init = torch.randn(3, 4, 5)
    stacked = torch.nn.Parameter(init.clone())
    separate = [torch.nn.Parameter(init[f].clone()) for f in range(3)]
    ours = _StackedAdam([stacked], 3, lr=0.01, weight_decay=0.1)
    theirs = [torch.optim.Adam([p], lr=0.01, weight_decay=0.1) for p in separate]
    for step in range(6):
        grads = torch.randn(3, 4, 5)
        active = torch.tensor([True, step % 2 == 0, step != 3])
        stacked.grad = grads.clone()
        ours.step(active)
        for f in range(3):
            if active[f]:
                separate[f].grad = grads[f].clone()
                theirs[f].step()
    for f in range(3):
        torch.testing.assert_close(stacked.data[f], separate[f].data)


def test_shared_batches_reproduce_plain_loop_batches():
    rng = np.random.default_rng(0)
    n, batch = 200, 16
    member = rng.random((3, n)) < np.array([[0.9], [0.6], [0.95]])
    order = epoch_permutation(0, 0, n)
    rows = member[:, order]
    seen = [[] for _ in range(3)]
    for lo, hi, mask in shared_batches(rows, batch):
        for f in range(3):
            seen[f].append(order[lo:hi][mask[:, f]])
    for f in range(3):
        expected = order[rows[f]]  # fold f's training samples in the shared order
        batches = [b for b in seen[f] if b.size]
        sizes = [b.size for b in batches]
        assert np.array_equal(np.concatenate(batches), expected)
        n_f = expected.size
        if n_f % batch == 1:
            assert sizes == [batch] * (n_f // batch - 1) + [batch + 1]
        else:
            assert sizes == [batch] * (n_f // batch) + ([n_f % batch] if n_f % batch else [])
