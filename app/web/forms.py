"""The playground's controls and the URL query string, both derived from ExperimentConfig.

Nothing here restates a limit or a default: fields, help text, bounds, options and defaults
are read from the pydantic models, so the form, the query string and the API cannot disagree.
A flat, dotted key names each field (`model.dropout`), lists are comma-separated
(`model.hidden=64,64`). `config_to_query` writes only values that differ from the defaults, in
the form's (canonical) order, so equal setups give equal links.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.ml.config import (
    DatasetConfig,
    ExperimentConfig,
    ModelConfig,
    SweepConfig,
    TrainConfig,
    describe_errors,
)
from app.rooms import Challenge

SECTIONS: list[tuple[str, str, type[BaseModel] | None]] = [
    ("dataset", "Data", DatasetConfig),
    ("model", "Network", ModelConfig),
    ("train", "Training", TrainConfig),
    ("sweep", "Sweep (optional)", SweepConfig),
    ("", "Label", None),
]
LABELS = {  # shorter labels than the field names where it reads better
    "dataset.name": "dataset", "dataset.seed": "data seed", "train.seed": "training seed",
    "dataset.n_train": "training examples", "dataset.extra_features": "irrelevant features",
    "model.hidden": "hidden layers (widths)", "model.dropout": "dropout rate p",
    "model.input_dropout": "input dropout p", "train.weight_decay": "weight decay",
    "train.l1": "L1", "train.lr": "learning rate", "sweep.dropout": "dropout rates to try",
    "sweep.grid_step": "or a grid: step", "sweep.random_samples": "or random: samples",
    "sweep.low": "grid/random from", "sweep.high": "grid/random to",
    "sweep.target": "apply rate to", "sweep.weight_decay": "× weight decays",
    "sweep.repeat_seeds": "repeats reseed",
}


def option_text(key: str, option: str) -> str:
    """What a select shows for an option (the value stays the config's)."""
    if key == "sweep.target":
        if option.startswith("layer"):
            return f"hidden layer {option.removeprefix('layer')}"
        return {"hidden": "every hidden layer", "input": "the inputs"}.get(option, option)
    return option


SWEEP_SOURCES = ("dropout", "grid_step", "random_samples", "weight_decay")


@dataclass
class FormField:
    name: str  # dotted key: form field name and query parameter
    label: str
    help: str
    kind: Literal["select", "number", "text"]
    default: str
    value: str = ""
    options: list[str] = field(default_factory=list)
    option_texts: list[str] = field(default_factory=list)  # what the select shows for each
    min: str | None = None
    max: str | None = None
    step: str | None = None
    error: str | None = None


@dataclass
class FormSection:
    key: str
    title: str
    fields: list[FormField]


def _bound(info: FieldInfo, *names: str) -> Any:
    for m in info.metadata:
        for n in names:
            if getattr(m, n, None) is not None:
                return getattr(m, n)
    return None


def _is_union(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union


def _strip_none(annotation: Any) -> Any:
    """X | None -> X; anything else unchanged."""
    if not _is_union(annotation):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _is_list(annotation: Any) -> bool:
    """True for list[...] and for unions that contain a list (e.g. float | list[float])."""
    if typing.get_origin(annotation) is list:
        return True
    if _is_union(annotation):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return False


def _scalar(annotation: Any) -> Any:
    """int, float or str behind Optional / Annotated / list wrappers."""
    for a in typing.get_args(annotation) or ():
        if a is not type(None):
            return _scalar(a)
    return annotation


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(to_text(v) for v in value)
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value == int(value) else repr(value)
    return str(value)


def _field(prefix: str, name: str, info: FieldInfo) -> FormField:
    key = f"{prefix}.{name}" if prefix else name
    default = info.get_default(call_default_factory=True)
    ann = info.annotation
    f = FormField(key, LABELS.get(key, name.replace("_", " ")), info.description or "", "text",
                  to_text(default))
    if typing.get_origin(ann) is Literal:
        f.kind, f.options = "select", [str(o) for o in typing.get_args(ann)]
        f.option_texts = [option_text(key, o) for o in f.options]
    elif not _is_list(ann) and _scalar(ann) in (int, float):
        f.kind = "number"
        lo, hi = _bound(info, "ge", "gt"), _bound(info, "le", "lt")
        f.min, f.max = to_text(lo), to_text(hi)
        f.step = "1" if _scalar(ann) is int else "any"
    return f


def blank_sections() -> list[FormSection]:
    """The form, with defaults as values."""
    sections = []
    for key, title, model in SECTIONS:
        if model is None:
            info = ExperimentConfig.model_fields["name"]
            fields = [_field("", "name", info)]
        else:
            fields = [_field(key, n, i) for n, i in model.model_fields.items()]
        for f in fields:
            f.value = f.default
        sections.append(FormSection(key, title, fields))
    return sections


FIELD_NAMES = [f.name for s in blank_sections() for f in s.fields]
# fields that take a value or a list (model.dropout): "0.3" is the value, "0.3," a list
EITHER_OR_LIST = {
    f"{key}.{name}" for key, _, model in SECTIONS if model
    for name, info in model.model_fields.items()
    if _is_list(info.annotation) and typing.get_origin(_strip_none(info.annotation)) is not list
}


def parse(params: Mapping[str, str]) -> dict:
    """Flat dotted keys (form or query) -> the nested dict ExperimentConfig validates.

    Unknown keys are ignored; empty values mean "default" (an empty `model.hidden` means no
    hidden layer). The sweep section is only kept when it asks for more than one run.
    """
    models = {key: model for key, _, model in SECTIONS if model}
    nested: dict[str, Any] = {}
    for key in FIELD_NAMES:
        raw = params.get(key)
        if raw is None:
            continue
        raw = raw.strip()
        prefix, _, name = key.rpartition(".")
        ann = (models[prefix] if prefix else ExperimentConfig).model_fields[name].annotation
        if raw == "" and key not in ("model.hidden", "name"):
            continue
        (nested.setdefault(prefix, {}) if prefix else nested)[name] = _value(raw, ann)
    sweep = nested.get("sweep")
    if sweep is not None and not any(sweep.get(k) for k in SWEEP_SOURCES) and all(
        str(sweep.get(k, "1")) == "1" for k in ("folds", "repeats")
    ):
        del nested["sweep"]  # only defaults: a single run
    return nested


def _value(raw: str, annotation: Any) -> Any:
    """A form's text as pydantic validates it: comma-separated for list fields."""
    pure_list = typing.get_origin(_strip_none(annotation)) is list
    if pure_list or (_is_list(annotation) and "," in raw):
        return [v.strip() for v in raw.split(",") if v.strip()]
    return raw


def validate(params: Mapping[str, str]) -> tuple[ExperimentConfig | None, dict[str, str]]:
    """(config, {}) or (None, {field: message}) for flat dotted params."""
    try:
        return ExperimentConfig.model_validate(parse(params)), {}
    except ValidationError as e:
        errors: dict[str, str] = {}
        for err in describe_errors(e):
            errors.setdefault(err["field"], err["message"])
        return None, errors


def filled_sections(params: Mapping[str, str], errors: Mapping[str, str]) -> list[FormSection]:
    """The form showing the submitted values (valid or not) and an error under each field."""
    sections = blank_sections()
    for s in sections:
        for f in s.fields:
            if params.get(f.name) is not None:
                f.value = params[f.name]
            f.error = errors.get(f.name)
    return sections


def unplaced_errors(errors: Mapping[str, str]) -> list[str]:
    """Errors not about one form field (e.g. the sweep's run budget): shown above the form."""
    return [f"{k}: {v}" for k, v in errors.items() if k not in FIELD_NAMES]


def config_to_params(config: ExperimentConfig) -> dict[str, str]:
    """The flat, non-default dotted params of a config, in canonical (form) order."""
    data = config.model_dump()
    out = {}
    for s in blank_sections():
        for f in s.fields:
            prefix, _, name = f.name.rpartition(".")
            section = (data.get(prefix) or {}) if prefix else data
            if prefix == "sweep" and data.get("sweep") is None:
                continue
            value = section.get(name)
            text = to_text(value)
            if isinstance(value, list) and len(value) <= 1 and f.name in EITHER_OR_LIST:
                text += ","  # a per-layer list of 0 or 1 rates, not one rate: keep it a list
            if text != f.default:
                out[f.name] = text
    return out


def config_to_query(config: ExperimentConfig) -> str:
    from urllib.parse import urlencode

    return urlencode(config_to_params(config), safe=",")


# -- a workshop room's challenge: the same rules, from app.rooms.Challenge --------------------

def challenge_fields(values: Mapping[str, str] | None = None,
                     errors: Mapping[str, str] | None = None) -> list[FormField]:
    """The presenter's challenge form: every dataset field and the epoch budget, defaults from
    Challenge (not from the playground), values from `values` (dotted keys)."""
    defaults = config_to_flat(Challenge().model_dump())
    fields = [_field("dataset", n, i) for n, i in DatasetConfig.model_fields.items()]
    fields += [_field("", n, Challenge.model_fields[n]) for n in ("epochs", "hidden",
                                                                  "activation")]
    for f in fields:
        if f.name == "activation":  # optional choice: empty means "participants choose"
            choices = typing.get_args(_strip_none(Challenge.model_fields["activation"]
                                                  .annotation))
            f.kind, f.options = "select", ["", *choices]
            f.option_texts = ["participants choose", *choices]
        f.label = CHALLENGE_LABELS.get(f.name, f.label)
        f.default = defaults.get(f.name, f.default)
        f.value = (values or {}).get(f.name, f.default)
        f.error = (errors or {}).get(f.name)
    return fields


CHALLENGE_LABELS = {"epochs": "epoch budget", "hidden": "fixed network (widths)",
                    "activation": "fixed activation"}


def parse_challenge(params: Mapping[str, str]) -> dict:
    """The challenge form's dotted params -> the dict Challenge validates (empty = default)."""
    nested: dict[str, Any] = {}
    for f in challenge_fields():
        raw = (params.get(f.name) or "").strip()
        if raw:
            prefix, _, name = f.name.rpartition(".")
            ann = (DatasetConfig if prefix else Challenge).model_fields[name].annotation
            (nested.setdefault(prefix, {}) if prefix else nested)[name] = _value(raw, ann)
    return nested


def config_to_flat(data: dict, prefix: str = "") -> dict[str, str]:
    """A nested dict as the form's dotted keys and texts."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(config_to_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = to_text(value)
    return out
