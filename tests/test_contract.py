"""The contract every registered family keeps, checked over genlib.all_families() with each family's
own declared tiny config and data kind (test ids name the family: ``-k dcgan`` selects one).

Build, train two steps through the shared Trainer, sample in the declared data kind's shape, save
and reload exactly, the one callback payload, the declared sampling options, and every ability the
family has works while every other one says so in words.
"""
from __future__ import annotations

import pytest
import torch

import genlib
from genlib import TrainConfig, Trainer
from genlib.data import training_set
from genlib.model import ABILITIES, ABILITY_METHODS, AbilityMissing, DataKind, GenerativeModel, SamplingStep
from genlib.runs import save_run

FAMILIES = sorted(genlib.all_families())
TRAINABLE = [name for name in FAMILIES if genlib.get_family(name).trainable]
LOADED_ONLY = [name for name in FAMILIES if not genlib.get_family(name).trainable]
ANY_SIZE = 16  # the size used for a data kind's "any size" dimensions


def kind_batch(kind: DataKind, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` items of ``kind`` and labels: its offline training set where it has one, else uniform noise."""
    if kind.dataset is not None:
        images, labels = training_set(kind.dataset)
        return images[:n].clone(), labels[:n].clone()
    shape = tuple(ANY_SIZE if s is None else s for s in kind.shape)
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(0)), torch.zeros(n, dtype=torch.long)


@pytest.fixture(scope="module", params=TRAINABLE)
def core_trained(request, core_tiny_model):
    """(family, tiny model trained 2 steps, TrainResult) for each registered family."""
    family = request.param
    model = core_tiny_model(family)
    images, labels = kind_batch(model.trained_data(), 64)
    result = Trainer(TrainConfig(epochs=1, max_steps=2, batch_size=16)).fit(model, images, labels)  # device auto
    return family, model, result


def test_abilities_are_the_methods_a_family_overrides():
    assert set(ABILITY_METHODS) == set(ABILITIES)
    for cls in genlib.all_families().values():
        for ability, methods in ABILITY_METHODS.items():
            overridden = getattr(cls, methods[0]) is not getattr(GenerativeModel, methods[0])
            assert (ability in cls.abilities) == overridden, (cls.family, ability)


@pytest.mark.parametrize("family", LOADED_ONLY)
def test_a_loaded_only_family_claims_folders_and_refuses_building_in_words(family):
    cls = genlib.get_family(family)
    assert cls.own_checkpoint_layout  # it loads its own library's folders ...
    assert cls.claim_folder.__func__ is not GenerativeModel.claim_folder.__func__  # ... which it claims
    with pytest.raises(ValueError, match="loaded"):
        genlib.build_model(family, cls.tiny_config)


@pytest.mark.parametrize("family", FAMILIES)
def test_declarations_have_their_one_meaning(family):
    cls = genlib.get_family(family)
    assert isinstance(cls.data_kind, DataKind) and cls.data_kind.shape
    assert cls.Config.from_dict(cls.tiny_config) is not None  # the declared tiny config is valid
    assert cls.Sampling().to_dict() is not None
    assert ("likelihood" in cls.abilities) == bool(cls.likelihood)
    assert cls.description


def test_build_default_and_tiny(core_trained, core_tiny_config):
    family, _, _ = core_trained
    cls = genlib.get_family(family)
    default = genlib.build_model(family)
    assert isinstance(default, cls) and default.config == cls.Config()
    tiny = genlib.build_model(family, core_tiny_config(family).to_dict())
    assert tiny.num_parameters() <= default.num_parameters()
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
def test_samples_are_of_the_declared_data_kind(core_trained, n):
    _, model, _ = core_trained
    x = model.sample(n, generator=torch.Generator().manual_seed(0), labels=model.default_labels(n))
    kind = model.trained_data()
    kind.check(x)  # shape (n, *kind.shape); finite, in [0, 1] (token kinds: integer ids in range)
    assert x.shape[0] == n and x.dtype.is_floating_point != bool(kind.tokens)
    if kind.tokens:
        assert isinstance(model.decode_text(x[0]), str)


def test_sample_is_reproducible_from_a_generator(core_trained):
    _, model, _ = core_trained
    a = model.sample(6, generator=torch.Generator().manual_seed(5), labels=model.default_labels(6))
    b = model.sample(6, generator=torch.Generator().manual_seed(5), labels=model.default_labels(6))
    c = model.sample(6, generator=torch.Generator().manual_seed(6), labels=model.default_labels(6))
    assert torch.equal(a, b)
    if model.generative:  # a restorer restores fixed held-out items: another seed may give the same
        assert not torch.equal(a, c)


def test_the_one_callback_payload(core_trained):
    _, model, _ = core_trained
    seen: list[SamplingStep] = []
    out = model.draw(3, generator=torch.Generator().manual_seed(0), labels=model.default_labels(3),
                     callback=seen.append)
    assert seen and all(isinstance(s, SamplingStep) for s in seen)
    assert [s.step for s in seen] == list(range(len(seen))) and all(s.num_steps == len(seen) for s in seen)
    for s in seen:
        assert s.state.shape == s.prediction.shape == out.shape
    if len(seen) == 1:  # a one-shot sampler's only step predicts its output
        assert torch.equal(seen[0].prediction, out)


def test_sampling_options_are_declared_and_drawn(core_trained):
    _, model, _ = core_trained
    defaults = model.sampling_defaults()
    assert isinstance(defaults, model.Sampling)
    labels = model.default_labels(4)
    a = model.draw(4, generator=torch.Generator().manual_seed(3), labels=labels)
    b = model.sample(4, generator=torch.Generator().manual_seed(3), labels=labels, **defaults.to_dict())
    assert torch.equal(a, b)  # draw() is sample() with the declared options
    with pytest.raises(genlib.ConfigError, match="unknown setting"):
        model.draw(4, {"no_such_option": 1})


def test_conditional_labels(core_trained):
    family, model, _ = core_trained
    if not model.conditional:
        assert model.default_labels(4) is None and model.check_labels(None, 4) is None
        assert model.num_classes == 0
        return
    k = model.num_classes
    assert k >= 2
    assert torch.equal(model.default_labels(2 * k).cpu(), torch.arange(2 * k) % k)
    assert torch.equal(model.class_rows(3).cpu(), torch.arange(k).repeat_interleave(3))
    labels = torch.tensor([3, 3, 7])
    assert model.sample(3, labels=labels).shape[0] == 3
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
        labels = model.default_labels(8)
        a = model.sample(8, generator=torch.Generator().manual_seed(seed), labels=labels)
        b = loaded.sample(8, generator=torch.Generator().manual_seed(seed), labels=labels)
        assert torch.equal(a, b), f"{family}: samples differ after save/load (seed {seed})"
    # every tensor of the state (buffers too) survived exactly
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_abilities_work_and_missing_ones_say_so(core_trained):
    family, model, _ = core_trained
    x, y = kind_batch(model.trained_data(), 4)
    x = x.to(model.device)
    labels = y.to(model.device) if model.conditional else None
    for ability in set(ABILITIES) - model.abilities:
        assert not model.has(ability)
        with pytest.raises(AbilityMissing, match="cannot"):
            getattr(model, ABILITY_METHODS[ability][0])(x, labels)
    with torch.no_grad():
        if model.has("encode"):
            z = model.encode(x, labels)
            assert z.shape[0] == 4 and torch.isfinite(z).all()
            if model.has("decode"):
                model.trained_data().check(model.decode(z, labels), "decoded items")
        if model.has("reconstruct"):
            assert model.reconstruct(x, labels).shape == x.shape
        if model.has("denoise"):
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
            model.trained_data().check(model.denoise((x + 0.3 * noise).clamp(0, 1), labels), "denoised items")
        if model.has("likelihood"):
            assert model.likelihood in ("exact", "bound", "estimate")
            bpd = model.bits_per_dim(x, labels, generator=torch.Generator().manual_seed(0))
            assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()
        if model.has("attention"):
            maps = model.attention_maps(x[:1], 1, labels[:1] if labels is not None else None)
            assert maps and all(m.ndim == 3 and torch.isfinite(m).all() for m in maps.values())
        if model.has("text_attention"):
            record = model.attention_record("to be, or not")
            assert record.attentions and all(a.ndim == 3 and a.shape[1] == a.shape[2] == len(record.tokens)
                                             for a in record.attentions)
        if model.has("upscale"):
            s = model.config.scale
            up = model.upscale(x, labels)
            assert up.shape == (4, x.shape[1], s * x.shape[2], s * x.shape[3])
            model.trained_data().check(up, "upscaled items")
        if model.has("edit"):
            mask = torch.ones_like(x[:2])
            mask[..., : x.shape[-1] // 2] = 0
            lab = labels[:2] if labels is not None else None
            model.trained_data().check(model.inpaint(x[:2], mask, 2, torch.Generator().manual_seed(0), labels=lab),
                                       "inpainted items")
            model.trained_data().check(model.sdedit(x[:2], 0.5, 2, torch.Generator().manual_seed(0), labels=lab),
                                       "edited items")
