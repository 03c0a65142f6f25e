"""The playground's controls and the URL query string, both derived from ExperimentConfig.

Nothing here restates a limit or a default: fields, help text, bounds and options are read
from the pydantic models, and the form's defaults are the playground's starting setup
(app.ml.scenarios.START), so the form, the query string and the API cannot disagree. A flat,
dotted key names each field (`model.dropout`), lists are comma-separated (`model.hidden=64,64`)
or repeated (`model.hidden=64&model.hidden=64`, as the form's layer rows submit them:
`form_params`). `config_to_query` writes only values that differ from START, in the form's
(canonical) order, so equal setups give equal links; `parse` reads a query over START.

What this module adds to the models is layout only: which fields are the essentials (always
on screen), which fold away, which control draws each (a slider, a checkbox, dataset
pictures, the layer rows), and a slider's step.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.ml.config import (
    DatasetConfig,
    ExperimentConfig,
    ModelConfig,
    Rate,
    SweepConfig,
    TrainConfig,
    describe_errors,
)
from app.ml.datasets import CATALOG
from app.ml.scenarios import START
from app.rooms import Challenge

# (key, title, model, top-level ExperimentConfig fields shown in this section)
SECTIONS: list[tuple[str, str, type[BaseModel] | None, tuple[str, ...]]] = [
    ("dataset", "Data", DatasetConfig, ()),
    ("model", "Network", ModelConfig, ()),
    ("train", "Training", TrainConfig, ("baseline",)),
    ("sweep", "Sweep: several rates in one experiment", SweepConfig, ()),
    ("", "Label", None, ("name",)),
]
LABELS = {  # shorter labels than the field names where it reads better
    "dataset.name": "dataset", "dataset.seed": "data seed", "train.seed": "training seed",
    "dataset.n_train": "training examples", "dataset.extra_features": "irrelevant features",
    "model.hidden": "hidden layers", "model.dropout": "dropout rate p",
    "model.input_dropout": "input dropout p", "train.weight_decay": "weight decay",
    "train.l1": "L1", "train.lr": "learning rate", "sweep.dropout": "dropout rates to try",
    "sweep.grid_step": "or a grid: step", "sweep.random_samples": "or random: samples",
    "sweep.low": "grid/random from", "sweep.high": "grid/random to",
    "sweep.target": "apply rate to", "sweep.weight_decay": "× weight decays",
    "sweep.repeat_seeds": "repeats reseed", "baseline": "compare with p = 0",
}
# The essentials: on screen together with the data at 1366x768. Every other field folds away
# (a <details> per section), and a section without essentials folds whole.
ESSENTIAL = ("dataset.name", "dataset.n_train", "dataset.noise", "model.hidden",
             "model.dropout", "model.input_dropout", "train.epochs", "baseline")
# The control that draws a field, where it is not the type's default (select, number, text).
KINDS = {"dataset.name": "pictures", "baseline": "checkbox", "model.hidden": "layers",
         "model.dropout": "rates"}
# Fields with a slider beside their box, and the slider's step (the box takes any value).
SLIDERS = {"dataset.n_train": "10", "dataset.noise": "0.05", "dataset.label_noise": "0.05",
           "model.input_dropout": "0.05", "model.dropout": "0.05"}
ROW_FIELDS = ("model.hidden", "model.dropout")  # one value per layer row (form_params)


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
    kind: Literal["select", "number", "text", "checkbox", "pictures", "layers", "rates"]
    default: str
    value: str = ""
    options: list[str] = field(default_factory=list)
    option_texts: list[str] = field(default_factory=list)  # what the select shows for each
    min: str | None = None
    max: str | None = None
    step: str | None = None
    error: str | None = None
    slider: dict[str, str] | None = None  # {"min", "max", "step"} of the slider beside the box
    rows: list[dict[str, str]] = field(default_factory=list)  # "layers": width and rate per row
    same_rate: bool = True  # "layers": one rate for every row (the slider moves them together)
    rate: FormField | None = None  # "layers": the rates' field (model.dropout)
    width: dict[str, str] = field(default_factory=dict)  # "layers": bounds of a width box
    max_rows: int | None = None  # "layers": most hidden layers
    order: int = 0  # place in the canonical query (FIELD_NAMES)

    @property
    def essential(self) -> bool:
        return self.name in ESSENTIAL

    @property
    def pictures(self) -> list[dict]:
        """A "pictures" field's options, each with its thumbnail (app.web.datacard), built on
        first use and cached there."""
        from app.web import datacard

        return datacard.pictures() if self.kind == "pictures" else []


@dataclass
class FormSection:
    key: str
    title: str
    fields: list[FormField]

    @property
    def essential(self) -> list[FormField]:
        return [f for f in self.fields if f.essential]

    @property
    def more(self) -> list[FormField]:
        return [f for f in self.fields if not f.essential]

    @property
    def more_title(self) -> str:
        """What the fold holds, from its fields' labels ("batch size, optimizer, ...")."""
        return ", ".join(f.label for f in self.more)


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
    if isinstance(value, bool):
        return "true" if value else "false"
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
    elif ann is bool:
        f.kind = "checkbox"
    elif not _is_list(ann) and _scalar(ann) in (int, float):
        f.kind = "number"
        lo, hi = _bound(info, "ge", "gt"), _bound(info, "le", "lt")
        f.min, f.max = to_text(lo), to_text(hi)
        f.step = "1" if _scalar(ann) is int else "any"
    return f


def _slider(f: FormField, info: FieldInfo) -> dict[str, str]:
    """The slider beside a box: the field's own bounds (a rate's, for model.dropout), its top
    one step below an exclusive bound (p < 1)."""
    if f.name == "model.dropout":
        info = Rate.__metadata__[0]
    step = float(SLIDERS[f.name])
    lo, hi = _bound(info, "ge", "gt"), _bound(info, "le")
    if hi is None:
        hi = _bound(info, "lt") - step
    return {"min": to_text(lo), "max": to_text(round(hi, 6)), "step": SLIDERS[f.name]}


def _section_fields(key: str, model: type[BaseModel] | None,
                    top: tuple[str, ...]) -> list[FormField]:
    fields = [_field(key, n, i) for n, i in model.model_fields.items()] if model else []
    fields += [_field("", n, ExperimentConfig.model_fields[n]) for n in top]
    infos = {**(model.model_fields if model else {}), **ExperimentConfig.model_fields}
    for f in fields:
        f.kind = KINDS.get(f.name, f.kind)
        if f.name in SLIDERS:
            f.slider = _slider(f, infos[f.name.rpartition(".")[2]])
        if f.name == "model.hidden":
            width = typing.get_args(ModelConfig.model_fields["hidden"].annotation)[0]
            bounds = width.__metadata__[0]
            f.width = {"min": to_text(_bound(bounds, "ge")), "max": to_text(_bound(bounds, "le"))}
            f.max_rows = _bound(ModelConfig.model_fields["hidden"], "max_length")
    return fields


def config_to_flat(data: dict, prefix: str = "") -> dict[str, str]:
    """A nested dict as the form's dotted keys and texts."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(config_to_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = to_text(value)
    return out


def _start_defaults(sections: list[FormSection]) -> None:
    """The form opens with the playground's starting setup, not the models' defaults."""
    start = config_to_flat(START.model_dump())
    for s in sections:
        for f in s.fields:
            f.default = start.get(f.name, f.default)
            f.value = f.default


def blank_sections() -> list[FormSection]:
    """The form, with the starting setup (START) as values."""
    sections = [FormSection(key, title, _section_fields(key, model, top))
                for key, title, model, top in SECTIONS]
    _start_defaults(sections)
    for i, f in enumerate(f for s in sections for f in s.fields):
        f.order = i
    _finish(sections)
    return sections


def _finish(sections: list[FormSection]) -> None:
    """What depends on the values: the layer rows, and the training examples' top bound (the
    chosen dataset's largest training split)."""
    fields = {f.name: f for s in sections for f in s.fields}
    _layer_rows(fields)
    n_train, info = fields["dataset.n_train"], CATALOG.get(fields["dataset.name"].value)
    if info is not None and n_train.slider:
        n_train.max = to_text(min(int(n_train.max), info.max_train))
        n_train.slider = {**n_train.slider, "max": n_train.max}


def _layer_rows(fields: dict[str, FormField]) -> None:
    """The layer editor's rows (width, rate) from the texts of model.hidden and model.dropout:
    one rate for every layer, or a list of per-layer rates (a row per entry of the longer)."""
    hidden, rate = fields["model.hidden"], fields["model.dropout"]
    widths = [w.strip() for w in hidden.value.split(",") if w.strip()]
    per_layer = "," in rate.value
    rates = [r.strip() for r in rate.value.split(",") if r.strip()] if per_layer else []
    n = max(len(widths), len(rates))
    hidden.rows = [{"width": widths[i] if i < len(widths) else "",
                    "rate": (rates[i] if i < len(rates) else "") if per_layer
                    else rate.value.strip()} for i in range(n)]
    hidden.same_rate = len({r["rate"] for r in hidden.rows}) <= 1
    hidden.rate = rate


FIELD_NAMES = [f.name for s in blank_sections() for f in s.fields]
DEFAULTS = {f.name: f.default for s in blank_sections() for f in s.fields}
# fields that take a value or a list (model.dropout): "0.3" is the value, "0.3," a list
EITHER_OR_LIST = {
    f"{key}.{name}" for key, _, model, _ in SECTIONS if model
    for name, info in model.model_fields.items()
    if _is_list(info.annotation) and typing.get_origin(_strip_none(info.annotation)) is not list
}


def form_params(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Form or query items (names may repeat) -> one text per field: the layer rows' widths
    and rates are joined with commas (rows left blank skipped; equal rates give the one rate
    of every layer); for any other field the last value counts (a checkbox's hidden "false"
    comes before its "true")."""
    out: dict[str, str] = {}
    rows: dict[str, list[str]] = {}
    for key, value in items:
        if key in ROW_FIELDS:
            rows.setdefault(key, []).append(value.strip())
        else:
            out[key] = value
    for key, values in rows.items():
        if len(values) == 1:  # one text (a query, a hand-made form): as written
            out[key] = values[0]
            continue
        values = [v for v in values if v]
        same = key == "model.dropout" and len(set(values)) == 1
        out[key] = values[0] if same else ",".join(values)
    return out


def parse(params: Mapping[str, str]) -> dict:
    """Flat dotted keys (form or query) -> the nested dict ExperimentConfig validates: the
    starting setup (START) with the given values over it.

    Unknown keys are ignored; empty values mean "as in START" (an empty `model.hidden` means
    no hidden layer). The sweep section is only kept when it asks for more than one run; a
    sweep lists its own rates, so START's p = 0 twin is off unless `baseline` is given.
    """
    models = {key: model for key, _, model, _ in SECTIONS if model}
    nested: dict[str, Any] = START.model_dump(exclude={"sweep"})
    given: dict[str, Any] = {}
    for key in FIELD_NAMES:
        raw = params.get(key)
        if raw is None:
            continue
        raw = raw.strip()
        prefix, _, name = key.rpartition(".")
        ann = (models[prefix] if prefix else ExperimentConfig).model_fields[name].annotation
        if raw == "" and key not in ("model.hidden", "name"):
            continue
        (given.setdefault(prefix, {}) if prefix else given)[name] = _value(raw, ann)
    for key, value in given.items():
        if isinstance(value, dict):
            nested[key] = {**nested.get(key, {}), **value}
        else:
            nested[key] = value
    sweep = nested.get("sweep")
    if sweep is not None and not any(sweep.get(k) for k in SWEEP_SOURCES) and all(
        str(sweep.get(k, "1")) == "1" for k in ("folds", "repeats")
    ):
        del nested["sweep"]  # only defaults: a single run
    if "sweep" in nested and "baseline" not in given:
        nested["baseline"] = False
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
    _finish(sections)
    return sections


def unplaced_errors(errors: Mapping[str, str]) -> list[str]:
    """Errors not about one form field (e.g. the sweep's run budget): shown above the form."""
    return [f"{k}: {v}" for k, v in errors.items() if k not in FIELD_NAMES]


def config_to_params(config: ExperimentConfig) -> dict[str, str]:
    """The flat dotted params of a config that differ from the starting setup (START), in
    canonical (form) order."""
    data = config.model_dump()
    out = {}
    for name in FIELD_NAMES:
        prefix, _, key = name.rpartition(".")
        section = (data.get(prefix) or {}) if prefix else data
        if prefix == "sweep" and data.get("sweep") is None:
            continue
        if name == "baseline" and data.get("sweep") is not None and not config.baseline:
            continue  # parse turns the twin off for a sweep
        value = section.get(key)
        text = to_text(value)
        if isinstance(value, list) and len(value) <= 1 and name in EITHER_OR_LIST:
            text += ","  # a per-layer list of 0 or 1 rates, not one rate: keep it a list
        if text != DEFAULTS[name]:
            out[name] = text
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
