"""Streamlit widgets generated from a typed ``Config`` (genlib.config), and widget state kept across page visits.

Every family's settings form (train, sample) is drawn from its config's fields: numbers get a
number input with the field's bounds, choices a selectbox, bools a checkbox. ``make_config``
turns the values back into a validated config, or shows what is wrong.
"""
from __future__ import annotations

from typing import Any, Iterable

import streamlit as st

from genlib.config import Config, ConfigError
from genlib.model import GenerativeModel


def _clamp(value: Any, lo: Any, hi: Any) -> Any:
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


KEPT_VALUES = "ui_kept_widget_values"  # plain session state: {widget key: its last value}


def kept_value(key: str, default: Any) -> Any:
    """The default to give the widget with ``key`` so that its value survives a visit elsewhere.

    Streamlit drops a widget's state in every run that does not draw it (another page, or another
    of the lazy tabs), so on return it would show its default again. This keeps each live widget's
    value (at the start of a run it is the user's latest) in a plain session-state entry, which
    Streamlit never drops, and hands it back as the default once the widget state is gone. With a
    key, a widget's identity is its key, so a changing default never resets a live widget.
    """
    store = st.session_state.setdefault(KEPT_VALUES, {})
    if key in st.session_state:
        store[key] = st.session_state[key]
    return store.get(key, default)


def keep_widget_state(key: str, pinned: Any = None) -> None:
    """Call just before a widget drawn elsewhere (whose default you cannot pass): after a visit to
    another page it comes back with its last value, as with ``kept_value``, or with ``pinned`` when
    that is given. A live widget keeps what the user chose. (Setting a widget's state is allowed
    here because the widget is not drawn yet in this run.)"""
    store = st.session_state.setdefault(KEPT_VALUES, {})
    if key in st.session_state:
        store[key] = st.session_state[key]
        return
    value = pinned if pinned is not None else store.get(key)
    if value is not None:
        st.session_state[key] = store[key] = value


def _widget(spec: dict[str, Any], key: str, default: Any) -> Any:
    """One input widget for one config field spec (see ``Config.field_specs``); its value is kept
    across page visits (``kept_value``)."""
    label, kind, help_text = spec["name"].replace("_", " "), spec["type"], spec.get("help")
    lo, hi = spec.get("min"), spec.get("max")
    default = kept_value(key, default)
    if kind is bool:
        return st.checkbox(label, value=bool(default), help=help_text, key=key)
    if kind is int:
        return int(st.number_input(label, min_value=lo, max_value=hi, value=int(_clamp(int(default), lo, hi)),
                                   step=int(spec.get("step", 1)), help=help_text, key=key))
    if kind is float:
        lo, hi = (None if v is None else float(v) for v in (lo, hi))
        step = float(spec.get("step", 0.01 if hi is not None and hi <= 10 else 0.1))
        return float(st.number_input(label, min_value=lo, max_value=hi, value=float(_clamp(float(default), lo, hi)),
                                     step=step, format=spec.get("format", "%g"), help=help_text, key=key))
    choices = spec.get("choices")
    if choices:
        choices = list(choices)
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                            help=help_text, key=key)
    return st.text_input(label, value=str(default), help=help_text, key=key)


def config_widgets(config_cls: type[Config], key_prefix: str, defaults: dict[str, Any] | None = None,
                   only: Iterable[str] | None = None, columns: int = 1) -> dict[str, Any]:
    """Widgets generated from ``config_cls.field_specs()``; returns {field name: value}.

    ints and floats get number inputs with the field's min/max, strings with choices a
    selectbox, bools a checkbox. ``defaults`` overrides field defaults, ``only`` limits the
    fields shown, ``columns`` lays them out side by side. Keys are ``{key_prefix}_{name}``.
    Turn the values into a config with ``make_config``.
    """
    wanted = None if only is None else set(only)
    specs = [s for s in config_cls.field_specs() if wanted is None or s["name"] in wanted]
    slots = st.columns(columns) if columns > 1 else [st.container()]
    values = {}
    for i, spec in enumerate(specs):
        with slots[i % len(slots)]:
            default = (defaults or {}).get(spec["name"], spec["default"])
            values[spec["name"]] = _widget(spec, f"{key_prefix}_{spec['name']}", default)
    return values


def sampling_widgets(model: GenerativeModel, key_prefix: str, columns: int = 1) -> Config | None:
    """Widgets generated from the family's declared sampling options (``model.Sampling``), starting
    at the model's own defaults; the options (None after an error shown on the page)."""
    values = config_widgets(model.Sampling, key_prefix, defaults=model.sampling_defaults().to_dict(), columns=columns)
    return make_config(model.Sampling, values)


def make_config(config_cls: type[Config], values: dict[str, Any]) -> Config | None:
    """``config_cls.from_dict(values)``, or None after showing the ConfigError with st.error."""
    try:
        return config_cls.from_dict(values)
    except ConfigError as err:
        st.error(f"Invalid setting: {err}")
        return None
