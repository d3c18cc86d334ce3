"""Every registered model: shapes, gradients, channels_last, input normalisation, BatchOut sites.

Usage: ``.venv/bin/pytest tests/test_models.py``

Parametrized over ``list_models()``, so a newly registered model is tested by being registered;
big nets run with their small knobs (SMALL) and batches of 4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchout.errors import BatchoutError
from batchout.layers import BatchOutSite, batchout_labels, configure_batchout
from batchout.models import create_model, list_models, registry
from batchout.models.common import Normalize

SMALL = {"resnet_bottleneck": {"blocks": [1, 1, 1]}, "vgg19": {"width_mult": 0.25}}
SHAPES = [(1, 28, 10), (3, 32, 3)]  # (in_channels, image_size, num_classes): MNIST-like, CIFAR3-like
MODELS = list_models()


# batches of 2-4 images: a thread pool costs more in sync than it saves (3-10x on 2 busy cores)
pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str, c: int = 3, size: int = 32, classes: int = 10, mean=None, std=None) -> nn.Module:
    mean = [0.5] * c if mean is None else mean
    std = [0.25] * c if std is None else std
    return create_model(name, classes, c, size, mean, std, **SMALL.get(name, {}))


def test_builtin_models_are_registered():
    assert {"lenet", "paper_cifar", "resnet_bottleneck", "vgg19"} <= set(MODELS)


@pytest.mark.parametrize(("c", "size", "classes"), SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite_gradients(name, c, size, classes):
    torch.manual_seed(0)
    model = build(name, c, size, classes).train()
    x, y = torch.rand(4, c, size, size), torch.arange(4) % classes
    logits = model(x)
    assert logits.shape == (4, classes)
    F.cross_entropy(logits, y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_normalize_is_the_first_layer_and_normalizes(name):
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.5]
    model = build(name, mean=mean, std=std).eval()
    order: list[nn.Module] = []
    for m in model.modules():
        if not list(m.children()):
            m.register_forward_pre_hook(lambda mod, _: order.append(mod))
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert isinstance(order[0], Normalize)
    # The same weights without normalisation, fed the normalised pixels, give the same logits.
    plain = build(name, mean=[0.0] * 3, std=[1.0] * 3).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    plain.load_state_dict(state, strict=False)
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(plain(xn), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_sites_are_listed_in_forward_order_and_final_site_feeds_last_fc(name):
    model = build(name).eval()
    sites = model.batchout_sites
    assert len(set(sites)) == len(sites) > 0
    assert set(model.default_batchout_sites) <= set(sites) and model.final_site in sites
    seen: list[str] = []
    captured: dict[str, torch.Tensor] = {}

    def record(mod: BatchOutSite, _: tuple, out: torch.Tensor) -> None:
        seen.append(mod.name)
        captured[mod.name] = out

    for m in model.modules():
        if isinstance(m, BatchOutSite):
            m.register_forward_hook(record)
    last_fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    last_fc.register_forward_pre_hook(lambda mod, args: captured.update({"fc_in": args[0]}))
    model(torch.rand(2, 3, 32, 32))
    assert tuple(seen) == sites
    torch.testing.assert_close(captured[model.final_site], captured["fc_in"])


@pytest.mark.parametrize("method", ["batchout", "batchout_final"])
@pytest.mark.parametrize("name", MODELS)
def test_default_batchout_trains_and_leaves_eval_unchanged(name, method):
    torch.manual_seed(0)
    model = build(name).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    before = model(x)
    installed = configure_batchout(model, method, 0.5, 0.2, None)
    expected = list(model.default_batchout_sites) if method == "batchout" else [model.final_site]
    assert installed == expected
    torch.testing.assert_close(model(x), before)  # eval mode: BatchOut is the identity
    model.train()
    with batchout_labels(model, y):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize(("c", "size"), [(1, 4), (5, 9), (3, 64)])
def test_lenet_fits_any_image_size_and_channels(c, size):
    model = create_model("lenet", 7, c, size, [0.5] * c, [0.5] * c)
    assert model(torch.rand(2, c, size, size)).shape == (2, 7)


def test_resnet_blocks_knob_sets_the_depth():
    def n_blocks(model: nn.Module) -> int:
        return sum(type(m).__name__ == "PreActBottleneck" for m in model.modules())

    assert n_blocks(create_model("resnet_bottleneck", 3, 3, 32, [0.5] * 3, [0.25] * 3)) == 27  # (9, 9, 9)
    assert n_blocks(build("resnet_bottleneck")) == 3


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("alexnet", {}, r"model: unknown value 'alexnet'; allowed: " + ", ".join(MODELS)),
        ("lenet", {"width": 2}, r"model_kwargs.width: unknown key for model 'lenet'; allowed: dropout"),
        ("resnet_bottleneck", {"blocks": [1, 1]}, r"model_kwargs.blocks: got \[1, 1\]; allowed: a list of 3"),
        ("resnet_bottleneck", {"width": 0}, r"model_kwargs.width: got 0; allowed: an integer >= 1"),
        ("vgg19", {"width_mult": -1}, r"model_kwargs.width_mult: got -1; allowed: a number in \(0.0, 4.0\]"),
        ("paper_cifar", {"dropout": "high"}, r"model_kwargs.dropout: got 'high'"),
    ],
)
def test_bad_name_or_kwargs_give_one_line_errors(name, kwargs, match):
    with pytest.raises(BatchoutError, match=match):
        create_model(name, 10, 3, 32, [0.5] * 3, [0.25] * 3, **kwargs)


def test_bad_data_shape_arguments_are_named():
    with pytest.raises(BatchoutError, match=r"mean: got 1 values; expected one per channel \(3\)"):
        create_model("lenet", 10, 3, 32, [0.5], [0.25] * 3)
    with pytest.raises(BatchoutError, match=r"std: got \[0.25, 0.0, 0.25\]; allowed: values > 0"):
        create_model("lenet", 10, 3, 32, [0.5] * 3, [0.25, 0.0, 0.25])
    with pytest.raises(BatchoutError, match=r"image_size: got 2; allowed: an integer >= 4"):
        create_model("lenet", 10, 3, 2, [0.5] * 3, [0.25] * 3)


def test_register_model_adds_a_factory(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, "tiny"))  # a new model is listed in batchout.names

    @registry.register_model("tiny")
    def tiny(num_classes, in_channels, image_size, mean, std, hidden: int = 3):
        flat = in_channels * image_size**2
        head = nn.Linear(hidden, num_classes)
        return nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.Linear(flat, hidden), head)

    assert "tiny" in list_models() and registry.model_knobs("tiny") == ["hidden"]
    model = create_model("tiny", 4, 1, 5, [0.0], [1.0], hidden=6)
    assert model[2].out_features == 6 and model(torch.rand(3, 1, 5, 5)).shape == (3, 4)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("tiny")(lambda *a: nn.Identity())


def test_vgg19_batchout_uses_the_papers_placement():
    """The paper puts BatchOut after every conv/FC pre-activation; vgg19 used to get one site."""
    from batchout.layers import configure_batchout

    vgg = create_model("vgg19", 10, 3, 32, [0.5] * 3, [0.25] * 3, width_mult=0.125)
    assert configure_batchout(vgg, "batchout", 0.5, 0.1, None) == [f"conv{i}" for i in range(1, 17)]
    assert configure_batchout(vgg, "batchout_final", 0.5, 0.1, None) == ["features"]
