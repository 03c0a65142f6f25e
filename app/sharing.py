"""Sharing one experiment's runs out over idle workers, and putting the parts back together.

A sweep is many independent runs. When workers sit idle and nobody waits, the dispatcher
(app.jobs) gives each idle worker a *part*: a slice of the run indices. Every run has its own
seeds and generators, so a run trains to the same numbers whichever part it is in. The parts
report their runs' results; once the last part has ended, `combine` makes the experiment's one
final status and summary, exactly as one process training every run would have. Pure
bookkeeping: no torch, no threads, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.ml.summary import summarize

MIN_RUNS_PER_PART = 1  # a part trains at least this many runs


def plan_parts(n_runs: int, workers: int) -> list[list[int]]:
    """Run indices 0..n_runs-1 in at most `workers` contiguous parts of nearly equal size
    (the first parts one run larger). Contiguous: a sweep's runs of one rate (its folds and
    seeds) stay together, so each part still batches runs of the same shape."""
    parts = max(1, min(workers, n_runs // MIN_RUNS_PER_PART))
    base, extra = divmod(n_runs, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


@dataclass
class SharedExperiment:
    """An experiment whose runs train in `parts` parts at once, and what its ended parts
    reported. Recording a part twice (a write retried after the database refused it) changes
    nothing."""

    parts: int
    task: str = "classification"  # the experiment's (set when it starts)
    statuses: dict[int, str] = field(default_factory=dict)  # part -> done|cancelled|failed
    errors: dict[int, str] = field(default_factory=dict)
    runs: dict[int, dict] = field(default_factory=dict)  # run index -> run dict

    def record(self, part: int, status: str, run_dicts: list[dict] | None,
               error: str | None) -> None:
        """Part `part` ended with `status`; keep what it said."""
        self.statuses[part] = status
        if error:
            self.errors[part] = error
        for run in run_dicts or []:
            self.runs[run["index"]] = run

    @property
    def complete(self) -> bool:
        return len(self.statuses) == self.parts

    def combine(self) -> tuple[str, dict]:
        """The experiment's final (status, extra) once every part has ended: failed if any part
        failed (with the first reason), else cancelled if any part was stopped, else done; the
        summary over every run that reported, in run order."""
        summary = summarize([self.runs[i] for i in sorted(self.runs)], self.task)
        statuses = set(self.statuses.values())
        if "failed" in statuses:
            reason = self.errors[min(self.errors)] if self.errors else "training failed"
            return "failed", {"summary": summary, "error": reason}
        return ("cancelled" if "cancelled" in statuses else "done"), {"summary": summary}
