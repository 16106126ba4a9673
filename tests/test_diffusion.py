"""The diffusion families: schedulers, samplers, editing, likelihood, attention and diffusers folders.

Real tiny UNets (a few thousand parameters), real diffusers schedulers and pipeline folders; no mocks.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from huggingface_hub.utils import filter_repo_objects

import genlib
from genlib.checkpoints import HUB_ALLOW_PATTERNS, CheckpointError, read_info, save_folder
from genlib.config import ConfigError
from genlib.families.diffusion import (SAMPLERS, SCHEDULES, CDiffusionConfig, DiffusionConfig, all_schedule_curves,
                                       make_mask, schedule_curves_for)
from genlib.families.diffusion import tools as diffusion_tools

pytestmark = pytest.mark.usefixtures("core_runs_dir")
STEPS = 5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def core_digits(core_slice):
    return core_slice[0][:3], core_slice[1][:3]


def _public(config) -> dict:
    """A diffusers config as JSON would hold it, without its private keys (_name_or_path, ...)."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


def _foreign_unet(**overrides) -> UNet2DModel:
    """A tiny RGB 32x32 UNet of the kind google/ddpm-cifar10-32 is, made here (never downloaded)."""
    torch.manual_seed(0)
    return UNet2DModel(**{"sample_size": 32, "in_channels": 3, "out_channels": 3, "block_out_channels": (8, 16),
                          "layers_per_block": 1, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
                          "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 4,
                          "attention_head_dim": 8, **overrides})


# -- config ---------------------------------------------------------------------------------------------------
def test_default_config_builds_the_documented_unet():
    cfg = DiffusionConfig()
    unet = cfg.unet_config()
    assert unet["block_out_channels"] == (32, 64, 64)
    assert unet["down_block_types"][-1] == "AttnDownBlock2D" and unet["up_block_types"][0] == "AttnUpBlock2D"
    assert cfg.scheduler_config()["beta_schedule"] == "linear" and CDiffusionConfig().cond_drop_prob == 0.1


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="divisible by 4"):
        DiffusionConfig(sample_size=30).unet_config()
    with pytest.raises(ConfigError, match="attention_head_dim"):
        DiffusionConfig(attention_head_dim=48).unet_config()
    with pytest.raises(ConfigError, match="sample_steps"):
        DiffusionConfig(num_train_timesteps=20, sample_steps=50)
    with pytest.raises(ConfigError, match="schedule"):
        DiffusionConfig(schedule="quadratic")


# -- schedules and the forward process ----------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_add_noise_then_one_reverse_step_with_the_true_target_recovers_x0(core_tiny_model, prediction):
    model = core_tiny_model("diffusion", prediction=prediction, num_train_timesteps=1000)
    x0 = torch.rand(4, 1, 28, 28, generator=_gen()) * 2 - 1
    noise = torch.randn(x0.shape, generator=_gen(1))
    for t in (0, 10, 500, 999):
        tt = torch.full((4,), t)
        sched = model.noise_scheduler()
        x_t = sched.add_noise(x0, noise, tt)
        target = {"epsilon": noise, "sample": x0, "v_prediction": sched.get_velocity(x0, noise, tt)}[prediction]
        step = sched.step(target, t, x_t)
        assert torch.allclose(step.pred_original_sample, x0, atol=1e-4), t
        assert torch.allclose(model.predict_x0(x_t, tt, target), x0, atol=1e-4), t
    # a DDIM step (eta 0) with the true noise lands exactly on q(x_prev | x0) with the same noise
    ddim = model.make_scheduler("ddim")
    ddim.set_timesteps(10)
    t, t_prev = ddim.timesteps[0], ddim.timesteps[1]
    x_t = ddim.add_noise(x0, noise, t.repeat(4))
    target = {"epsilon": noise, "sample": x0, "v_prediction": ddim.get_velocity(x0, noise, t.repeat(4))}[prediction]
    assert torch.allclose(ddim.step(target, t, x_t).prev_sample, ddim.add_noise(x0, noise, t_prev.repeat(4)), atol=1e-4)


def test_schedule_curves_are_monotone():
    curves = all_schedule_curves(1000)
    assert set(curves) == set(SCHEDULES)
    for name, c in curves.items():
        assert c["t"].shape == c["alphas_cumprod"].shape == c["log_snr"].shape == (1000,)
        assert np.all(np.diff(c["alphas_cumprod"]) < 0), name
        assert np.all(np.diff(c["log_snr"]) < 0), name
        assert 0 < c["alphas_cumprod"].min() and c["alphas_cumprod"].max() < 1
    assert curves["cosine"]["alphas_cumprod"][500] > curves["linear"]["alphas_cumprod"][500]  # cosine destroys later
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_curves_for("quadratic")


def test_model_schedule_and_noisy_at(core_diffusion, core_digits):
    ours = core_diffusion.schedule_curves()
    assert np.allclose(ours["alphas_cumprod"], schedule_curves_for("linear", 100)["alphas_cumprod"])
    x0 = core_digits[0]
    early = core_diffusion.noisy_at(x0, 0, generator=_gen())
    late = core_diffusion.noisy_at(x0, torch.tensor([99, 99, 99]), generator=_gen())
    assert early.shape == late.shape == x0.shape
    assert float(early.min()) >= 0 and float(late.max()) <= 1
    assert (early - x0).abs().mean() < 0.05 < (late - x0).abs().mean()
    same = [core_diffusion.noisy_at(x0, 50, generator=_gen(3)) for _ in range(2)]
    assert torch.equal(*same)


# -- sampling -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_gives_images_and_calls_back_every_step(core_diffusion, sampler):
    seen = []
    x = core_diffusion.sample(3, generator=_gen(), sampler=sampler, steps=STEPS, callback=seen.append)
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert [d.step for d in seen] == list(range(STEPS))
    ts = [d.t for d in seen]
    assert ts == sorted(ts, reverse=True) and ts[0] > ts[-1]
    for d in seen:  # the one SamplingStep payload: state x_t and prediction x0, both images in [0,1]
        assert isinstance(d.t, int) and d.num_steps == STEPS
        for image in (d.state, d.prediction):
            assert image.shape == (3, 1, 28, 28) and float(image.min()) >= 0 and float(image.max()) <= 1


def test_ddim_with_eta_zero_is_deterministic_and_eta_is_checked(core_diffusion):
    a = core_diffusion.sample(4, generator=_gen(7), sampler="ddim", steps=STEPS, eta=0.0)
    b = core_diffusion.sample(4, generator=_gen(7), sampler="ddim", steps=STEPS, eta=0.0)
    assert torch.equal(a, b)
    c = core_diffusion.sample(4, generator=_gen(7), sampler="ddim", steps=STEPS, eta=1.0)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="eta"):
        core_diffusion.sample(2, sampler="euler", steps=STEPS, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        core_diffusion.sample(2, sampler="plms")
    with pytest.raises(ValueError, match="steps"):
        core_diffusion.sample(2, steps=1000)


@pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
def test_other_predictions_train_and_sample(core_tiny_model, core_slice, prediction):
    model = core_tiny_model("cdiffusion", prediction=prediction, schedule="cosine")
    out = model.training_step((core_slice[0][:8], core_slice[1][:8]), 0)
    assert torch.isfinite(out.loss) and out.scalars["loss"] > 0
    model.eval()
    for sampler in ("dpm-solver++", "euler"):
        x = model.sample(2, generator=_gen(), sampler=sampler, steps=STEPS)
        assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_clip_the_snr_and_divide_out_the_targets_own_weight(core_tiny_model, core_slice, prediction):
    model = core_tiny_model("diffusion", prediction=prediction, snr_gamma=5.0)
    forward = model.noise_scheduler()
    t = torch.tensor([0, 10, 50, 99])
    abar = model.alphas_cumprod[t]
    snr = abar / (1 - abar)                                             # high at t=0, low at t=T-1
    own = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[prediction]
    torch.testing.assert_close(model.min_snr_weights(forward, t), snr.clamp(max=5.0) / own, rtol=1e-4, atol=1e-6)
    out = model.training_step((core_slice[0][:8], core_slice[1][:8]), 0)
    assert torch.isfinite(out.loss) and {"loss", "mse"} <= out.scalars.keys()


def test_the_configured_sampler_is_the_default(core_tiny_model):
    model = core_tiny_model("diffusion", sampler="euler", sample_steps=STEPS)
    seen = []
    model.sample(1, generator=_gen(), callback=lambda info: seen.append(info.num_steps))
    euler = model.sample(1, generator=_gen(), sampler="euler", steps=STEPS)
    assert seen == [STEPS] * STEPS and torch.equal(model.sample(1, generator=_gen()), euler)


def test_guidance_changes_conditional_samples(core_cdiffusion, core_diffusion):
    labels = torch.tensor([1, 7])
    kw = dict(generator=None, labels=labels, steps=STEPS)
    plain = core_cdiffusion.sample(2, **{**kw, "generator": _gen(2)}, guidance_scale=1.0)
    guided = core_cdiffusion.sample(2, **{**kw, "generator": _gen(2)}, guidance_scale=4.0)
    again = core_cdiffusion.sample(2, **{**kw, "generator": _gen(2)}, guidance_scale=4.0)
    assert not torch.equal(plain, guided) and torch.equal(guided, again)
    with pytest.raises(ValueError, match="guidance_scale"):
        core_diffusion.sample(2, steps=STEPS, guidance_scale=3.0)


def test_sampling_never_changes_the_shared_model(core_diffusion):
    before = {k: v.clone() for k, v in core_diffusion.state_dict().items()}
    config = dict(core_diffusion.scheduler_config)
    for sampler in SAMPLERS:
        core_diffusion.sample(1, generator=_gen(), sampler=sampler, steps=3)
    assert core_diffusion.scheduler_config == config
    assert all(torch.equal(before[k], v) for k, v in core_diffusion.state_dict().items())


# -- editing --------------------------------------------------------------------------------------------------------
def test_make_mask_kinds():
    for kind in ("half", "box", "random"):
        mask = make_mask(kind, (3, 1, 28, 28), generator=_gen())
        assert mask.shape == (3, 1, 28, 28) and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert 0 < mask.mean() < 1
    assert make_mask("half", (1, 1, 28, 28))[0, 0, :14].eq(1).all()
    assert torch.equal(make_mask("box", (2, 1, 28, 28), _gen(4)), make_mask("box", (2, 1, 28, 28), _gen(4)))
    with pytest.raises(ValueError, match="mask kind"):
        make_mask("circle", (1, 1, 28, 28))


@pytest.mark.parametrize("jump_n", [1, 2])
def test_inpainting_keeps_the_known_region(core_cdiffusion, core_digits, jump_n):
    x0, labels = core_digits
    mask = make_mask("half", x0.shape)
    seen = []
    out = core_cdiffusion.inpaint(x0, mask, STEPS, _gen(), seen.append, labels=labels, jump_n=jump_n)
    assert out.shape == x0.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    known = mask.bool().expand_as(x0)
    assert torch.equal(out[known], x0[known])
    assert not torch.equal(out[~known], x0[~known])
    assert len(seen) == STEPS


def test_sdedit(core_diffusion, core_digits):
    x0 = core_digits[0]
    assert torch.equal(core_diffusion.sdedit(x0, 0.0, STEPS, _gen()), x0)
    for sampler in SAMPLERS:
        seen = []
        out = core_diffusion.sdedit(x0, 0.6, 10, _gen(), sampler, callback=seen.append)
        assert out.shape == x0.shape and torch.isfinite(out).all() and len(seen) == 6, sampler
    light = core_diffusion.sdedit(x0, 0.1, 10, _gen())
    heavy = core_diffusion.sdedit(x0, 1.0, 10, _gen())
    assert (light - x0).abs().mean() < (heavy - x0).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        core_diffusion.sdedit(x0, 1.5)


# -- likelihood -----------------------------------------------------------------------------------------------------
def test_bits_per_dim_is_a_finite_positive_bound(core_diffusion, core_cdiffusion, core_digits):
    x, labels = core_digits
    bpd = core_diffusion.bits_per_dim(x, generator=_gen())
    assert bpd.shape == (3,) and torch.isfinite(bpd).all() and (bpd > 0).all()
    assert torch.equal(bpd, core_diffusion.bits_per_dim(x, generator=_gen()))
    assert core_diffusion.likelihood == "bound" and core_diffusion.has("likelihood")
    for given in (labels, None):  # p(x | class) and, with the null class, p(x)
        cbpd = core_cdiffusion.bits_per_dim(x, given, generator=_gen(), num_timesteps=2)
        assert cbpd.shape == (3,) and torch.isfinite(cbpd).all() and (cbpd > 0).all()


# -- attention ------------------------------------------------------------------------------------------------------
def test_attention_maps_are_distributions_and_processors_are_restored(core_cdiffusion, core_digits):
    layers = diffusion_tools.attention_layers(core_cdiffusion.unet)
    before = {name: layer.processor for name, layer in layers.items()}
    maps = core_cdiffusion.attention_maps(core_digits[0][:1], 50, labels=torch.tensor([3]), generator=_gen())
    assert set(maps) == set(layers) and "mid_block.attentions.0" in maps
    for name, probs in maps.items():
        heads, q, k = probs.shape
        assert heads == layers[name].heads and q == k == 14 * 14  # levels=2: attention at 14x14
        assert (probs >= 0).all() and torch.allclose(probs.sum(-1), torch.ones(heads, q), atol=1e-5)
    assert {name: layer.processor for name, layer in layers.items()} == before
    assert core_cdiffusion.attention_maps(None, 99)  # from pure noise, with the null class
    over = core_cdiffusion.attention_over_time(core_digits[0][:1], (20, 5), [0, 50, 99], generator=_gen())
    for probs in over.values():
        assert probs.shape[0] == 3 and probs.shape[-2:] == (14, 14)
        assert torch.allclose(probs.sum((-1, -2)), torch.ones(probs.shape[:2]), atol=1e-5)


def test_a_unet_without_attention_does_not_offer_maps(core_tiny_model):
    model = core_tiny_model("diffusion", attention=False)
    assert not model.has("attention") and model.has("likelihood")
    assert "attention" in type(model).abilities  # the family has it; this instance does not


# -- checkpoints: diffusers pipeline folders ------------------------------------------------------------------------
def test_genlib_saves_a_real_diffusers_pipeline_and_loads_it_back(core_cdiffusion, tmp_path):
    meta = {"family": "cdiffusion", "model": core_cdiffusion.config.to_dict(), "train": {"epochs": 1}}
    folder = save_folder(tmp_path / "cdiff", core_cdiffusion, meta, {"metrics.json": "{}"})
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["config.json", "metrics.json", "model_index.json", "scheduler/scheduler_config.json",
                     "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["family"] == "cdiffusion"
    loaded, info = genlib.load_model(folder)
    assert info.family == "cdiffusion" and loaded.config == core_cdiffusion.config and not loaded.training
    labels = torch.tensor([0, 5, 9])
    for sampler in ("ddim", "ddpm"):
        a = core_cdiffusion.sample(3, generator=_gen(5), labels=labels, sampler=sampler, steps=STEPS)
        b = loaded.sample(3, generator=_gen(5), labels=labels, sampler=sampler, steps=STEPS)
        assert torch.equal(a, b), sampler
    # diffusers itself reads the folder as a DDPMPipeline
    pipe = DDPMPipeline.from_pretrained(folder)
    assert isinstance(pipe.scheduler, DDPMScheduler) and pipe.unet.config.num_class_embeds == 11
    assert all(torch.equal(p, q) for p, q in zip(pipe.unet.parameters(), core_cdiffusion.unet.parameters()))


def test_genlib_config_must_fit_the_unet(core_diffusion, tmp_path):
    meta = {"family": "diffusion", "model": core_diffusion.config.to_dict()}
    folder = save_folder(tmp_path / "d", core_diffusion, meta)
    meta["model"]["base_channels"] = 16
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="base_channels"):
        genlib.load_model(folder)


def test_any_unconditional_diffusers_pipeline_loads_as_diffusion(tmp_path):
    unet = _foreign_unet()
    scheduler = DDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "rgb")
    info = read_info(tmp_path / "rgb")
    assert info.family == "diffusion"
    assert info.model_config["in_channels"] == 3 and info.model_config["sample_size"] == 32
    assert info.model_config["schedule"] == "cosine" and info.model_config["prediction"] == "v_prediction"
    model, _ = genlib.load_model(str(tmp_path / "rgb"))
    assert _public(model.unet.config) == _public(unet.config)  # the UNet's config verbatim
    assert model.has("attention")
    for sampler in ("ddim", "euler"):
        x = model.sample(2, generator=_gen(), sampler=sampler, steps=STEPS)
        assert x.shape == (2, 3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert model.bits_per_dim(torch.rand(2, 3, 32, 32), generator=_gen(), num_timesteps=1).shape == (2,)
    # resaved by genlib it keeps the same UNet and scheduler
    save_folder(tmp_path / "resaved", model, {"family": "diffusion", "model": model.config.to_dict()})
    again, _ = genlib.load_model(tmp_path / "resaved")
    assert torch.equal(again.sample(2, generator=_gen(1), steps=STEPS), model.sample(2, generator=_gen(1), steps=STEPS))
    # and the pipeline's files are what a hub download fetches
    files = [str(p.relative_to(tmp_path / "rgb")) for p in (tmp_path / "rgb").rglob("*") if p.is_file()]
    assert sorted(filter_repo_objects(files, allow_patterns=list(HUB_ALLOW_PATTERNS))) == sorted(files)


def test_diffusers_folders_genlib_cannot_use_are_refused_clearly(tmp_path):
    sched = DDIMScheduler(num_train_timesteps=50)
    DDPMPipeline(unet=_foreign_unet(num_class_embeds=4), scheduler=sched).save_pretrained(tmp_path / "cond")
    with pytest.raises(CheckpointError, match="class-conditional"):
        genlib.load_model(tmp_path / "cond")
    DDPMPipeline(unet=_foreign_unet(), scheduler=sched).save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(CheckpointError, match="pickled weights are refused"):
        genlib.load_model(tmp_path / "pickled")
    index = json.loads((tmp_path / "cond" / "model_index.json").read_text())
    (tmp_path / "cond" / "model_index.json").write_text(json.dumps({**index, "vqvae": ["diffusers", "VQModel"]}))
    with pytest.raises(CheckpointError, match="one UNet2DModel and one scheduler"):
        genlib.load_model(tmp_path / "cond")
