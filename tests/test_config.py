"""genlib.config: validation on construction, clear errors, JSON round trip, replace()."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import pytest

import genlib
from genlib.config import Config, ConfigError, TrainConfig, setting
from genlib.families.autoencoders import AEConfig, CVAEConfig, VAEConfig


@dataclass(frozen=True)
class _Demo(Config):
    count: int = setting(3, "an int", min=1, max=10)
    rate: float = setting(0.5, "a float", min=0.0, max=1.0)
    mode: str = setting("a", "a choice", choices=("a", "b"))
    flag: bool = setting(False, "a bool")
    secret: int = dataclasses.field(default=7, metadata={"hidden": True, "min": 0, "max": 9})


# -- ranges -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, name, value, lo, hi", [
    (TrainConfig, "epochs", 0, 1, 1000),
    (TrainConfig, "epochs", 1001, 1, 1000),
    (TrainConfig, "lr", 2.0, 1e-06, 1.0),
    (TrainConfig, "batch_size", 1, 2, 4096),
    (AEConfig, "latent_dim", 1, 2, 128),
    (VAEConfig, "beta", 1000.0, 0.0, 100.0),
    (CVAEConfig, "num_classes", 1, 2, 100),
])
def test_out_of_range_names_field_and_range(cls, name, value, lo, hi):
    with pytest.raises(ConfigError) as err:
        cls(**{name: value})
    msg = str(err.value)
    assert name in msg and "out of range" in msg
    assert f"{lo} to {hi}" in msg


def test_bounds_are_inclusive():
    assert TrainConfig(epochs=1).epochs == 1
    assert TrainConfig(epochs=1000).epochs == 1000
    assert TrainConfig(lr=1.0).lr == 1.0


@pytest.mark.parametrize("kwargs, field", [
    ({"epochs": "10"}, "epochs"),
    ({"lr": "fast"}, "lr"),
    ({"lr": None}, "lr"),
    ({"device": 3}, "device"),
    ({"amp": "yes"}, "amp"),
    ({"epochs": [1]}, "epochs"),
])
def test_wrong_type_refused(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kwargs)


def test_bool_is_not_an_int_and_int_is_not_a_bool():
    with pytest.raises(ConfigError, match="epochs must be a number"):
        TrainConfig(epochs=True)
    with pytest.raises(ConfigError, match="lr must be a number"):
        TrainConfig(lr=False)
    with pytest.raises(ConfigError, match="amp must be true or false"):
        TrainConfig(amp=1)


def test_int_field_takes_whole_floats_and_refuses_fractions():
    cfg = TrainConfig(epochs=3.0)
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    with pytest.raises(ConfigError, match="epochs must be a whole number"):
        TrainConfig(epochs=3.5)


@pytest.mark.parametrize("text", ['{"epochs": Infinity}', '{"epochs": NaN}', '{"epochs": -Infinity}',
                                  '{"epochs": 1' + "0" * 400 + "}", '{"lr": 1' + "0" * 400 + "}",
                                  '{"lr": NaN}', '{"lr": Infinity}'])
def test_non_finite_and_huge_numbers_from_json_are_config_errors(text):
    # Python's json accepts NaN/Infinity and arbitrarily large ints; all must end as a ConfigError.
    key = next(iter(json.loads(text)))
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_json(text)


def test_float_field_takes_ints_as_floats():
    cfg = TrainConfig(lr=1)
    assert cfg.lr == 1.0 and type(cfg.lr) is float


def test_choices_enforced():
    with pytest.raises(ConfigError) as err:
        TrainConfig(device="tpu")
    assert "device='tpu'" in str(err.value) and "auto, cpu, cuda" in str(err.value)
    with pytest.raises(ConfigError, match="loss='l1' is not one of bce, mse"):
        AEConfig(loss="l1")
    assert AEConfig(loss="mse").loss == "mse"


def test_unknown_keys_refused_with_known_listed():
    with pytest.raises(ConfigError) as err:
        VAEConfig.from_dict({"latent_dim": 4, "latnet_dim": 4, "zzz": 1})
    msg = str(err.value)
    assert "latnet_dim" in msg and "zzz" in msg
    known = msg.split("known:")[1]
    for name in ("beta", "hidden", "kl_warmup_steps", "latent_dim", "loss", "mse_sigma", "width"):
        assert name in known


def test_from_dict_refuses_non_objects():
    with pytest.raises(ConfigError, match="expects a JSON object"):
        TrainConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="expects a JSON object"):
        TrainConfig.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{epochs: 3")


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_dict({"epochs": -1})


def test_missing_keys_take_defaults():
    assert TrainConfig.from_dict({}) == TrainConfig()
    assert VAEConfig.from_dict({"beta": 2.0}) == VAEConfig(beta=2.0)


def _all_configs():
    return [TrainConfig] + [cls.Config for _, cls in sorted(genlib.all_families().items())]


@pytest.mark.parametrize("cls", _all_configs(), ids=lambda c: c.__name__)
def test_json_round_trip_defaults_and_changed(cls):
    default = cls()
    assert cls.from_json(default.to_json()) == default
    # change every field to another legal value and round-trip again
    changes = {}
    for spec in cls.field_specs():
        t, name = spec["type"], spec["name"]
        if t is bool:
            changes[name] = not spec["default"]
        elif t is int:
            changes[name] = spec["max"] if spec["default"] == spec["min"] else spec["min"]
        elif t is float:
            changes[name] = spec["min"] + (spec["max"] - spec["min"]) / 3
        elif t is str and len(spec.get("choices") or ()) > 1:
            changes[name] = [c for c in spec["choices"] if c != spec["default"]][0]
    assert changes, "nothing to change"
    # Fields can constrain each other (a VAE's binarize needs the bce loss): keep the changes that
    # stay legal together, then round-trip each one left out on its own.
    def legal(fields: dict) -> bool:
        try:
            cls(**fields)
            return True
        except ConfigError:
            return False

    together: dict = dict(changes) if legal(changes) else {}
    for name, value in changes.items():
        if name not in together and legal({**together, name: value}):
            together[name] = value
    alone = [{name: value} for name, value in changes.items() if name not in together]
    types = {s["name"]: s["type"] for s in cls.field_specs()}
    for change in [together] + alone:
        changed = cls(**change)
        assert changed != default
        back = cls.from_json(changed.to_json())
        assert back == changed
        assert json.loads(back.to_json()) == json.loads(changed.to_json())
        for name in change:
            assert type(getattr(back, name)) is types[name]


def test_configs_are_frozen():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 5  # type: ignore[misc]


def test_replace_validates_and_refuses_unknown():
    cfg = TrainConfig()
    new = cfg.replace(epochs=5, lr=0.01)
    assert (new.epochs, new.lr) == (5, 0.01)
    assert cfg.epochs == 10  # the original is untouched
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)
    with pytest.raises(ConfigError, match="epoch"):
        cfg.replace(epoch=5)


def test_field_specs_carry_limits_and_skip_hidden():
    specs = {s["name"]: s for s in _Demo.field_specs()}
    assert list(specs) == ["count", "rate", "mode", "flag"]
    assert specs["count"]["min"] == 1 and specs["count"]["max"] == 10 and specs["count"]["type"] is int
    assert specs["mode"]["choices"] == ("a", "b")
    assert specs["flag"]["help"] == "a bool" and specs["flag"]["default"] is False
    # hidden fields are still validated
    with pytest.raises(ConfigError, match="secret"):
        _Demo(secret=99)


def test_every_family_config_has_help_and_limits():
    for name, cls in genlib.all_families().items():
        for spec in cls.Config.field_specs():
            assert spec.get("help"), f"{name}.{spec['name']} has no help text"
            if spec["type"] in (int, float):
                assert "min" in spec and "max" in spec, f"{name}.{spec['name']} has no range"
            assert math.isfinite(spec["default"]) if spec["type"] in (int, float) else True
