"""Pins BatchOut semantics: which rows move, by how much, toward whom, and where gradients go.

Usage: ``.venv/bin/pytest tests/test_batchout_layers.py``

Most tests feed one-hot rows (``x = eye(B)``): then ``out_i = (1 - n) e_i + n e_j`` shows the
partner ``j`` and the strength ``n`` of every row exactly.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from batchout.errors import BatchoutError
from batchout.layers import (
    BatchOut,
    BatchOutFinal,
    batchout_labels,
    configure_batchout,
    different_label_partners,
    find_sites,
    num_perturbed,
)
from batchout.models import create_model


def recover(x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For one-hot rows: (partner index, n) per row; an unchanged row gives (itself, nan)."""
    delta = out - x
    partners, ns = [], []
    for i, row in enumerate(delta):
        if row.abs().max() < 1e-7:
            partners.append(i)
            ns.append(float("nan"))
            continue
        j = int(row.argmax())
        n = float(row[j])
        expect = torch.zeros_like(row)
        expect[j], expect[i] = n, -n
        torch.testing.assert_close(row, expect)  # moved along e_j - e_i only
        partners.append(j)
        ns.append(n)
    return torch.tensor(partners), torch.tensor(ns)


def final_layer(n, labels: torch.Tensor) -> BatchOutFinal:
    layer = BatchOutFinal(n).train()
    layer.labels = labels
    return layer


# round(k * B) with halves rounded up: 0.5 * 5 = 2.5 -> 3.
ROWS = [(0.5, 8, 4), (0.25, 8, 2), (1.0, 5, 5), (0.0, 5, 0), (0.3, 5, 2), (0.5, 5, 3)]


@pytest.mark.parametrize(("k", "batch", "m"), ROWS)
def test_batchout_moves_only_the_first_round_k_rows_by_n(k, batch, m):
    assert num_perturbed(k, batch) == m
    x = torch.eye(batch)
    changed = torch.zeros(batch, dtype=torch.bool)
    for seed in range(20):
        torch.manual_seed(seed)
        out = BatchOut(k, 0.3).train()(x)
        assert torch.equal(out[m:], x[m:])
        partner, n = recover(x, out)
        moved = partner != torch.arange(batch)
        assert not moved[m:].any()
        torch.testing.assert_close(n[moved], torch.full((int(moved.sum()),), 0.3))
        changed |= moved
    # Partners are drawn with replacement (possibly the row itself), but over 20 draws each of
    # the first m rows moves at least once.
    assert changed[:m].all()


def test_batchout_partner_is_a_batch_row_for_image_features():
    torch.manual_seed(0)
    x = torch.randn(10, 3, 4, 4)
    out = BatchOut(0.5, 0.25).train()(x)
    assert torch.equal(out[5:], x[5:])
    for i in range(5):
        partner = x[i] + (out[i] - x[i]) / 0.25
        dist = (x - partner).flatten(1).abs().amax(1)
        assert float(dist.min()) < 1e-5, f"row {i} moved toward something that is not a batch row"


def test_batchout_final_moves_every_row_toward_a_different_label():
    torch.manual_seed(1)
    labels = torch.randint(0, 3, (24,))
    x = torch.eye(24)
    out = final_layer(0.2, labels)(x)
    partner, n = recover(x, out)
    assert (partner != torch.arange(24)).all()
    assert (labels[partner] != labels).all()
    torch.testing.assert_close(n, torch.full((24,), 0.2))


def test_different_label_partner_is_uniform_over_other_labels():
    torch.manual_seed(2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    draws = torch.stack([different_label_partners(labels)[0] for _ in range(4000)])
    for i, c in enumerate(labels.tolist()):
        candidates = (labels != c).nonzero().flatten()
        freq = torch.bincount(draws[:, i], minlength=7).float() / len(draws)
        assert freq[labels == c].sum() == 0
        expected = 1 / len(candidates)
        assert (freq[candidates] - expected).abs().max() < 0.04, (i, freq)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 1000), min_size=1, max_size=40))
def test_different_label_partners_property(values):
    labels = torch.tensor(values)
    partner, valid = different_label_partners(labels)
    has_other = torch.tensor([len(set(values) - {v}) > 0 for v in values])
    assert torch.equal(valid, has_other)
    assert (labels[partner][valid] != labels[valid]).all()
    assert torch.equal(partner[~valid], torch.arange(len(values))[~valid])


@pytest.mark.parametrize("make", [lambda: BatchOut(0.5, 0.3), lambda: BatchOutFinal(0.3)])
def test_no_gradient_reaches_the_partner(make):
    torch.manual_seed(3)
    layer = make().train()
    layer.labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    x = torch.randn(8, 5, requires_grad=True)
    w = torch.randn(8, 5)
    out = layer(x)
    (out * w).sum().backward()
    # out = x + n * (x_partner - x).detach(): by hand, dL/dx = w exactly. Without the detach
    # moved rows would get (1 - n) w and each partner an extra n w.
    assert not torch.equal(out, x)
    assert torch.equal(x.grad, w)


@pytest.mark.parametrize("layer", [BatchOut(1.0, 0.5), BatchOutFinal(0.5)])
def test_eval_mode_is_identity(layer):
    x = torch.randn(6, 4)
    assert layer.eval()(x) is x  # BatchOutFinal needs no labels in eval mode


def test_batch_of_one_and_one_class_batch_stay_unchanged():
    x1 = torch.randn(1, 3, 2, 2)
    assert torch.equal(BatchOut(1.0, 0.5).train()(x1), x1)
    assert torch.equal(final_layer(0.5, torch.tensor([4]))(x1), x1)
    x = torch.randn(5, 7)
    assert torch.equal(final_layer(0.5, torch.full((5,), 2))(x), x)
    # Rows of the majority class all go to the single other row, which itself moves.
    labels = torch.tensor([0, 0, 0, 1])
    partner, n = recover(torch.eye(4), final_layer(0.5, labels)(torch.eye(4)))
    assert partner.tolist()[:3] == [3, 3, 3] and partner[3] in (0, 1, 2)


@pytest.mark.parametrize("make", [lambda: BatchOut(0.5, (0.1, 0.4)), lambda: BatchOutFinal((0.1, 0.4))])
def test_reproducible_from_the_torch_seed(make):
    layer = make().train()
    layer.labels = torch.arange(16) % 3
    x = torch.randn(16, 6)
    torch.manual_seed(7)
    a = layer(x)
    torch.manual_seed(7)
    b = layer(x)
    torch.manual_seed(8)
    c = layer(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("make", [lambda: BatchOut(1.0, (0.2, 0.4)), lambda: BatchOutFinal((0.2, 0.4))])
def test_range_n_is_drawn_per_row_within_range(make):
    torch.manual_seed(4)
    layer = make().train()
    layer.labels = torch.arange(64) % 4
    x = torch.eye(64)
    _, n = recover(x, layer(x))
    n = n[~n.isnan()]
    assert len(n) > 50
    assert float(n.min()) >= 0.2 - 1e-6 and float(n.max()) <= 0.4 + 1e-6
    assert float(n.min()) < 0.23 and float(n.max()) > 0.37  # really spread over the range


def test_channels_last_is_kept_and_values_match():
    torch.manual_seed(5)
    x = torch.randn(8, 3, 5, 5)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(6)
    a = BatchOut(0.5, 0.2).train()(x)
    torch.manual_seed(6)
    b = BatchOut(0.5, 0.2).train()(xc)
    assert b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", [lambda: BatchOut(0.5, (0.1, 0.3)), lambda: BatchOutFinal(0.2)])
def test_bfloat16_features_keep_their_dtype(make):
    layer = make().train()
    layer.labels = torch.arange(8) % 2
    x = torch.randn(8, 4, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    out = layer(x)
    assert out.dtype == torch.bfloat16 and not torch.equal(out, x)
    out.float().sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_final_layer_labels_are_required_and_scoped():
    model = nn.Sequential(nn.Linear(3, 3), BatchOutFinal(0.1)).train()
    x = torch.randn(4, 3)
    with pytest.raises(BatchoutError, match="batchout_labels"):
        model(x)
    with batchout_labels(model, torch.tensor([0, 1, 0, 1])):
        assert model(x).shape == (4, 3)
    assert model[1].labels is None
    with pytest.raises(BatchoutError, match=r"labels shape \(3,\)"):
        with batchout_labels(model, torch.tensor([0, 1, 0])):
            model(x)
    assert model[1].labels is None  # cleared even when the forward pass fails


@pytest.fixture
def lenet() -> nn.Module:
    return create_model("lenet", num_classes=10, in_channels=1, image_size=12, mean=[0.5], std=[0.25])


def _installed(model: nn.Module) -> dict[str, nn.Module]:
    return {k: s.layer for k, s in find_sites(model).items() if not isinstance(s.layer, nn.Identity)}


def test_configure_defaults_install_at_the_paper_and_final_sites(lenet):
    keys = set(lenet.state_dict())
    assert configure_batchout(lenet, "batchout", 0.5, 0.1, None) == ["conv1", "conv2", "fc1"]
    layers = _installed(lenet)
    assert list(layers) == ["conv1", "conv2", "fc1"]
    assert all(isinstance(m, BatchOut) and m.k == 0.5 and m.n == 0.1 for m in layers.values())
    assert configure_batchout(lenet, "batchout_final", 0.5, [0.1, 0.3], None) == ["features"]
    layers = _installed(lenet)  # reconfiguring replaced the earlier layers
    assert list(layers) == ["features"] and isinstance(layers["features"], BatchOutFinal)
    assert layers["features"].n == (0.1, 0.3)
    assert configure_batchout(lenet, "standard", 0.5, 0.1, None) == [] and _installed(lenet) == {}
    assert set(lenet.state_dict()) == keys  # BatchOut adds no weights: model files load either way


def test_configure_explicit_sites_and_per_site_n(lenet):
    got = configure_batchout(lenet, "batchout", 0.25, {"fc1": 0.2, "conv1": (0.0, 0.1)}, ["fc1", "conv1"])
    assert got == ["conv1", "fc1"]  # forward order
    layers = _installed(lenet)
    assert layers["conv1"].n == (0.0, 0.1) and layers["fc1"].n == 0.2 and layers["fc1"].k == 0.25
    x, y = torch.rand(6, 1, 12, 12), torch.arange(6) % 2
    lenet.train()
    with batchout_labels(lenet, y):
        assert torch.isfinite(lenet(x)).all()


@pytest.mark.parametrize(
    ("method", "n", "layers", "match"),
    [
        ("batchout", 0.1, ["conv9"], r"batchout.layers: unknown site 'conv9'; allowed: conv1, conv2, fc1, f"),
        ("batchout", 0.1, ["fc1", "fc1"], r"batchout.layers: a site is listed twice"),
        ("batchout", {"conv1": 0.1}, ["conv1", "fc1"], r"batchout.n: no value for site 'fc1'"),
        ("batchout", {"conv1": 0.1, "conv2": 0.1}, ["conv1"], r"batchout.n.conv2: not one of the installed"),
        ("batchout", {"conv1": 0.1, "cnv1": 0.1}, ["conv1"], r"batchout.n.cnv1: not one of the model's"),
        ("batchout", 1.5, None, r"batchout.n: got 1.5; allowed"),
        ("batchout_final", (0.4, 0.2), None, r"batchout.n: got \(0.4, 0.2\); allowed"),
        ("mixup", 0.1, None,
         r"method: unknown value 'mixup'; allowed: standard, batchout, batchout_final, adversarial"),
    ],
)
def test_configure_rejects_bad_input_in_one_line(lenet, method, n, layers, match):
    with pytest.raises(BatchoutError, match=match):
        configure_batchout(lenet, method, 0.5, n, layers)


def test_configure_rejects_bad_k(lenet):
    with pytest.raises(BatchoutError, match=r"batchout.k: got 2; allowed: a number in \[0, 1\]"):
        configure_batchout(lenet, "batchout", 2, 0.1, None)


@pytest.mark.gpu
def test_layers_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    dev = torch.device("cuda")
    labels = torch.arange(32, device=dev) % 5
    x = torch.eye(32, device=dev)
    torch.manual_seed(0)
    out = final_layer((0.1, 0.3), labels)(x)
    partner, n = recover(x.cpu(), out.cpu())
    assert (labels.cpu()[partner] != labels.cpu()).all() and float(n.min()) >= 0.1 - 1e-6
    out = BatchOut(0.5, 0.2).train()(x)
    assert torch.equal(out[16:], x[16:])
    for method in ("batchout", "batchout_final"):
        model = create_model("lenet", 10, 1, 28, [0.5], [0.25]).to(dev).train()
        configure_batchout(model, method, 0.5, (0.05, 0.2), None)
        xb, yb = torch.rand(64, 1, 28, 28, device=dev), torch.arange(64, device=dev) % 10
        with batchout_labels(model, yb), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
