"""The contract every registered family keeps, checked over genlib.families() with tiny configs.

Build, train two steps through the shared Trainer, sample, save and reload exactly, and every
declared ability exists and returns tensors of the right shape.
"""
from __future__ import annotations

import pytest
import torch

import genlib
from genlib import TrainConfig, Trainer
from genlib.model import ABILITIES, GenerativeModel
from genlib.runs import save_run

FAMILIES = sorted(genlib.families())

# ability -> the method that provides it
ABILITY_METHODS = {
    "encode": "encode", "decode": "decode", "reconstruct": "reconstruct", "denoise": "denoise",
    "log_likelihood": "bits_per_dim", "attention_maps": "attention_maps",
}


def test_ability_table_covers_every_known_ability():
    assert set(ABILITY_METHODS) == set(ABILITIES)


@pytest.fixture(scope="module", params=FAMILIES)
def core_trained(request, core_tiny_model, core_slice):
    """(family, tiny model trained 2 steps, TrainResult) for each registered family."""
    family = request.param
    model = core_tiny_model(family)
    images, labels = core_slice
    result = Trainer(TrainConfig(epochs=1, max_steps=2, batch_size=16)).fit(model, images, labels)  # device auto
    return family, model, result


def _labels_for(model: GenerativeModel, n: int):
    return torch.arange(n, device=model.device) % model.num_classes if model.conditional else None


def test_build_default_and_tiny(core_trained, core_tiny_config):
    family, _, _ = core_trained
    cls = genlib.get_family(family)
    default = genlib.build_model(family)
    assert isinstance(default, cls) and default.config == cls.Config()
    tiny = genlib.build_model(family, core_tiny_config(family).to_dict())
    assert tiny.num_parameters() < default.num_parameters()
    assert tiny.abilities <= set(ABILITIES)
    with pytest.raises(TypeError, match=cls.Config.__name__):
        cls(genlib.TrainConfig())  # a config of the wrong class is refused


def test_two_training_steps_give_finite_loss(core_trained):
    family, model, result = core_trained
    assert result.steps == 2
    assert len(result.history) == 2
    for row in result.history:
        assert torch.isfinite(torch.tensor(row["loss"])), row
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not model.training  # the Trainer hands the model back in eval mode


@pytest.mark.parametrize("n", [1, 5])
def test_sample_shape_dtype_range(core_trained, n):
    _, model, _ = core_trained
    x = model.sample(n, generator=torch.Generator().manual_seed(0), labels=_labels_for(model, n))
    assert x.shape == (n, 1, 28, 28)
    assert x.dtype.is_floating_point
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.isfinite(x).all()


def test_sample_is_reproducible_from_a_generator(core_trained):
    _, model, _ = core_trained
    a = model.sample(6, generator=torch.Generator().manual_seed(5), labels=_labels_for(model, 6))
    b = model.sample(6, generator=torch.Generator().manual_seed(5), labels=_labels_for(model, 6))
    c = model.sample(6, generator=torch.Generator().manual_seed(6), labels=_labels_for(model, 6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_callback_receives_a_dict(core_trained):
    _, model, _ = core_trained
    seen = []
    model.sample(3, generator=torch.Generator().manual_seed(0), labels=_labels_for(model, 3), callback=seen.append)
    assert seen and all(isinstance(d, dict) and "step" in d for d in seen)


def test_conditional_labels(core_trained):
    family, model, _ = core_trained
    if not model.conditional:
        assert model.default_labels(4) is None
        assert model.num_classes == 0
        return
    k = model.num_classes
    assert k >= 2
    assert torch.equal(model.default_labels(2 * k).cpu(), torch.arange(2 * k) % k)
    labels = torch.tensor([3, 3, 7])
    assert model.sample(3, labels=labels).shape == (3, 1, 28, 28)
    # the label changes the image: same noise, different class
    a = model.sample(1, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0]))
    b = model.sample(1, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1]))
    assert not torch.equal(a, b)
    for bad in (torch.tensor([0, 1]), torch.tensor([0, 1, k]), torch.tensor([-1, 0, 1]), torch.zeros(3, 2)):
        with pytest.raises(ValueError, match="labels"):
            model.sample(3, labels=bad)


def test_save_and_load_give_identical_samples(core_trained, tmp_path):
    family, model, result = core_trained
    out = save_run(model, TrainConfig(epochs=1, max_steps=2, batch_size=16), result, tmp_path / family,
                   {"note": "contract"})
    loaded, info = genlib.load_model(out, expect_family=family)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert info.family == family and info.metrics["note"] == "contract" and info.metrics["status"] == "finished"
    assert not loaded.training
    for seed in (0, 11):
        labels = _labels_for(model, 8)
        a = model.sample(8, generator=torch.Generator().manual_seed(seed), labels=labels)
        b = loaded.sample(8, generator=torch.Generator().manual_seed(seed), labels=labels)
        assert torch.equal(a, b), f"{family}: samples differ after save/load (seed {seed})"
    # every tensor of the state (buffers too) survived exactly
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_declared_abilities_exist_and_work(core_trained, core_slice):
    family, model, _ = core_trained
    x = core_slice[0][:4].to(model.device)
    labels = core_slice[1][:4].to(model.device) if model.conditional else None
    for ability in model.abilities:
        method = ABILITY_METHODS[ability]
        assert callable(getattr(model, method, None)), f"{family} declares {ability} but has no {method}()"
        assert model.has(ability)
    for ability in set(ABILITIES) - model.abilities:
        assert not model.has(ability)
    with torch.no_grad():
        if model.has("encode"):
            z = model.encode(x, labels)
            assert z.shape[0] == 4 and torch.isfinite(z).all()
            if model.has("decode"):
                y = model.decode(z, labels)
                assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        if model.has("reconstruct"):
            assert model.reconstruct(x, labels).shape == x.shape
        if model.has("denoise"):
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
            noisy = (x + 0.3 * noise).clamp(0, 1)
            d = model.denoise(noisy, labels)
            assert d.shape == x.shape and float(d.min()) >= 0 and float(d.max()) <= 1
        if model.has("log_likelihood"):
            bpd = model.bits_per_dim(x, labels, generator=torch.Generator().manual_seed(0))
            assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()
