"""What the run panel says in words, computed from the stored numbers.

- `paired_verdict`: one or two sentences saying what dropout changed in a paired run (the
  chosen rate beside its p = 0 twin, app.ml.config.ExperimentConfig.paired), written for
  whichever way the numbers fall: dropout helped, did not, or made no real difference.
- `chart_texts`: a short text alternative per chart of the panel (what it shows and, once the
  experiment has a summary, its final values), which the page ties to each chart with
  aria-describedby.

Only words and formatting live here; the numbers come from the summary (app.ml.summary) and
the labels from app.ml.runs, so the page never computes them again.
"""

from __future__ import annotations

from app.ml.config import ExperimentConfig
from app.ml.runs import METRICS, Setting, plan_runs, settings_of
from app.ml.summary import primary_metric

SAME = 1.05  # validation losses within 5 % of each other read as "about the same"
LISTED = 6  # settings named one by one in a chart's text; more are summarized


def num(v: float | None) -> str:
    """A loss or score as a sentence writes it: two decimals from 0.1 up, else 2 significant
    digits; "n/a" for a diverged value."""
    if v is None:
        return "n/a"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}"


def times(ratio: float) -> str:
    """A ratio as "1.7×" (two decimals below 1.2, where one would round 1.05 to 1.0 or 1.1)."""
    return f"{ratio:.2f}×" if ratio < 1.2 else f"{ratio:.1f}×"


def _score_text(task: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.0f}%" if task == "classification" else f"{v:.2f}"


def _finals(summary: dict | None) -> dict[int, dict]:
    """Run index -> final epoch metrics, for the runs of the summary that have one."""
    runs = (summary or {}).get("runs") or []
    return {r["index"]: r["final"] for r in runs if r.get("final")}


# -- a paired run ---------------------------------------------------------------------------


def paired_verdict(config: ExperimentConfig, summary: dict | None) -> str | None:
    """What dropout changed, from the final numbers of run 0 (the chosen rates) and run 1
    (the p = 0 twin); None unless the experiment is paired and both runs have finished.

    The validation loss decides the first clause: the twin's is higher (dropout helped), lower
    (it did not), or within SAME of it. The training loss (eval mode) says why: lower for the
    twin while its validation loss is higher is overfitting that dropout held back; lower too
    when the twin also wins is dropout costing more fit than it saved.
    """
    if not config.paired:
        return None
    finals = _finals(summary)
    if 0 not in finals or 1 not in finals:
        return None
    rate = settings_of(plan_runs(config))[0].label
    a, b = finals[0], finals[1]  # a: with dropout, b: the p = 0 twin
    va, vb, ta, tb = a.get("val_loss"), b.get("val_loss"), a.get("train_loss"), b.get("train_loss")
    if va is None or vb is None:
        which = "Both runs" if va is None and vb is None else (
            f"The run at {rate}" if va is None else "The p = 0 twin")
        return f"{which} diverged (the loss is not a number), so there is nothing to compare."
    train = f"{num(tb)} against {num(ta)}"
    if va > 0 and vb / va >= SAME:
        text = (f"Without dropout (p = 0) the final validation loss is {num(vb)}, "
                f"{times(vb / va)} the {num(va)} of {rate}")
        if tb is not None and ta is not None and tb < ta:
            text += (f"; its training loss is lower ({train}): it fit the training points "
                     "more closely and did worse on new data. That is overfitting, and "
                     "dropout held it back.")
        else:
            text += f"; its training loss is not lower ({train}), so dropout helped here " \
                    "without costing fit."
    elif vb > 0 and va / vb >= SAME:
        text = (f"Here dropout did not help: without dropout (p = 0) the final validation loss "
                f"is {num(vb)}, lower than the {num(va)} of {rate} ({times(va / vb)} as much)")
        if tb is not None and ta is not None and tb < ta:
            text += (f"; its training loss is lower too ({train}). At {rate} dropout cost "
                     "more fit than it saved: too much regularization for this data, or the "
                     "luck of one seed (a sweep with repeats tells which).")
        else:
            text += f"; training loss {train}."
    else:
        text = (f"Without dropout (p = 0) the final validation loss is {num(vb)}, about the "
                f"same as the {num(va)} of {rate} (training loss {train}): at this data and "
                "network dropout made little difference.")
    score = primary_metric(config.task)
    sa, sb = a.get(score), b.get(score)
    if sa is not None and sb is not None:
        name = METRICS[score].label
        text += (f" {name[:1].upper() + name[1:]}: {_score_text(config.task, sa)} at {rate}, "
                 f"{_score_text(config.task, sb)} at p = 0.")
    return text


# -- a text alternative per chart ------------------------------------------------------------


def _per_setting(settings: list[Setting], finals: dict[int, dict], field: str,
                 task: str) -> str:
    """ "0.31 at p = 0.5, 0.52 at p = 0": each setting's final value of its first run, or for
    many settings the lowest and highest."""
    pairs = [(s.label, finals[s.runs[0]].get(field)) for s in settings if s.runs[0] in finals]
    pairs = [(label, v) for label, v in pairs if v is not None]
    if not pairs:
        return ""
    show = (lambda v: _score_text(task, v)) if field in ("val_acc", "val_r2") else num
    if len(pairs) <= LISTED:
        return ", ".join(f"{show(v)} at {label}" for label, v in pairs)
    lo = min(pairs, key=lambda p: p[1])
    hi = max(pairs, key=lambda p: p[1])
    return (f"from {show(lo[1])} at {lo[0]} to {show(hi[1])} at {hi[0]} across "
            f"{len(pairs)} settings")


def chart_texts(config: ExperimentConfig, summary: dict | None,
                insight: str | None) -> dict[str, str]:
    """Per chart of the run panel (loss, score, gap, surface or curve, sweep, confusion): a
    sentence on what it shows, and once the summary exists the final values (a sweep's
    settings by their first run here; the sweep chart and table give the means)."""
    task = config.task
    settings = settings_of(plan_runs(config))
    many = len(settings) > 1
    whose = (" The colour is the dropout rate: " + ", ".join(s.label for s in settings[:LISTED])
             + ("…" if len(settings) > LISTED else "") + ".") if many else ""
    finals = _finals(summary)
    score = primary_metric(task)
    quantity = METRICS[score].label.removeprefix("validation ")
    out = {
        "loss": "Loss against epoch: validation loss as a solid line, training loss in eval "
                "mode dashed" + ("" if many else ", the mini-batch loss with dropout on dotted")
                + "." + whose,
        "score": f"{quantity[:1].upper() + quantity[1:]} against epoch: validation solid, "
                 f"training (eval mode) dashed." + whose,
        "gap": "Generalization gap (validation loss minus training loss) against epoch: how "
               "much worse the network does on data it did not train on." + whose,
    }
    if insight == "surface":
        out["surface"] = ("Decision surface: the network's probability of class 1 over the input "
                          "plane in eval mode, the boundary where both classes are equally "
                          "likely drawn as a line; training points filled, validation hollow."
                          + (" One surface per rate, side by side." if config.paired else ""))
    elif insight == "curve":
        out["curve"] = ("The network's prediction (eval mode) over x, with a band of Monte Carlo "
                        "dropout: the spread of predictions with dropout kept on."
                        + (" One per rate, side by side." if config.paired else ""))
    if config.sweep is not None:
        out["sweep"] = ("Each setting's final validation metric against the dropout rate, mean "
                        "± standard deviation over its runs; live while training.")
    if task == "classification":
        out["confusion"] = ("Validation examples counted by true class (rows) and predicted "
                            "class (columns) after the last epoch.")
    if finals:
        out["loss"] += " Final validation loss: " + _per_setting(
            settings, finals, "val_loss", task) + "."
        out["score"] += f" Final validation {quantity}: " + _per_setting(
            settings, finals, score, task) + "."
        out["gap"] += " Final gap: " + _per_setting(
            settings, finals, "generalization_gap", task) + "."
        for key in ("surface", "curve"):
            if key in out:
                out[key] += f" Final validation {quantity}: " + _per_setting(
                    settings, finals, score, task) + "."
        runs = (summary or {}).get("runs") or []
        confusion = runs[0].get("confusion") if runs else None
        if confusion and "confusion" in out:
            total = sum(map(sum, confusion))
            right = sum(confusion[i][i] for i in range(len(confusion)))
            out["confusion"] += (f" {right} of {total} correct ({100 * right / total:.0f}%)"
                                 + (f", run 0 ({settings[0].label})." if many else "."))
        best = (((summary or {}).get("sweep") or {}).get("best") or {}).get("val_loss")
        label = next((s.label for s in settings if s.key == best), None)
        if "sweep" in out and label:
            out["sweep"] += f" Lowest mean final validation loss: {label}."
    return out
