"""Training on a Ray cluster: every experiment (a sweep included, as one batched model) is one
Ray task on any node, streaming its epochs back as they happen.

`RayExecutor` is the local executor (app.jobs) with its worker processes swapped for *slots*:
threads in the server process, each following one Ray task at a time and speaking the very
pipe protocol a local worker speaks (app.worker). So the queue, the fair order, the per-person
limits, the time limit and the store/publish path are the same code for both executors.

- The task is a Ray generator: it yields each message (a batch of epochs, snapshots, the
  final summary) the moment the trainer produces it; the slot stores and publishes it.
- Cancel is Ray cancellation (`ray.cancel`): the task gets KeyboardInterrupt and stops its
  trainer; the epochs already stored are kept and summarized.
- A lost worker or node fails the experiment with the reason, keeping its epochs: tasks are
  not retried (a rerun would repeat epochs already streamed), so nothing stays "running".
- Ray workers are reused between tasks, so torch is imported once per worker, not per run.

Ray is an optional extra (`pip install .[ray]`); this module is imported only when
DP_EXECUTOR=ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import ray
from ray.exceptions import RayError, TaskCancelledError

from app.jobs import LocalExecutor, _Worker
from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs, run_dict
from app.ml.summary import summarize

log = logging.getLogger(__name__)
FINAL = ("finished", "error")
WAIT_SECONDS = 0.2  # how often a slot looks at its cancel flag while the task is quiet


@ray.remote(max_retries=0)
def experiment_task(exp_id: str, config_json: str, threads: int):
    """Runs on a Ray worker: trains one experiment and yields app.worker's messages.

    The trainer runs on a thread of its own and hands messages over a queue, because Ray's
    cancel interrupts this generator (KeyboardInterrupt), which then tells the trainer to stop
    at its next step."""
    import torch

    from app.worker import NICENESS, train_one

    torch.set_num_threads(threads)
    messages: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            # as the local workers: training yields the CPU to a web process on the same
            # machine (Linux sets the priority of the calling thread: the trainer's)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, NICENESS)
            train_one(exp_id, config_json, messages.put, stop.is_set)
        except BaseException as e:  # train_one reports its own errors; this is the rest
            messages.put(("error", exp_id, f"the training thread ended: {e!r}"))
    trainer = threading.Thread(target=work, daemon=True)
    trainer.start()
    try:
        while True:
            msg = messages.get()
            yield msg
            if msg[0] in FINAL:
                return
    finally:
        stop.set()
        trainer.join(10.0)


class _SlotThread(threading.Thread):
    """Stands in for a worker process (the dispatcher waits on its `sentinel`, joins it, reads
    its exit code), follows Ray tasks one at a time."""

    def __init__(self, conn, cancel, cpus: int):
        super().__init__(name="ray-slot", daemon=True)
        self.conn, self.cancel, self.cpus = conn, cancel, cpus
        self.sentinel, self._done = os.pipe()  # readable once the thread has ended
        self.exitcode: int | None = None
        self._killed = False

    @property
    def pid(self) -> int | None:
        return self.native_id

    def kill(self) -> None:
        """Stop at once: cancel the running task and say nothing more (the executor, which
        kills slots only when it stops, has already recorded the experiment's end)."""
        self._killed = True

    def join(self, timeout: float | None = 10.0) -> None:  # never forever: Ray may be gone
        super().join(timeout)
        if not self.is_alive() and self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None

    def run(self) -> None:
        try:
            self.conn.send(("ready",))
            while not self._killed:
                if not self.conn.poll(WAIT_SECONDS):
                    continue
                msg = self.conn.recv()
                if msg is None:
                    return
                _, exp_id, config_json = msg
                self._follow(exp_id, config_json)
        except (EOFError, OSError):
            pass  # the executor closed the pipe
        finally:
            self.exitcode = 0
            os.close(self._done)

    def _follow(self, exp_id: str, config_json: str) -> None:
        """Forward one task's messages until its end, whatever the end is; an unexpected
        error ends the experiment (failed) and cancels the task, never the slot."""
        try:
            self._forward(exp_id, config_json)
        except Exception as e:
            log.exception("Ray slot error")
            if not self._killed:
                self.conn.send(("error", exp_id, f"the Ray slot failed: {e!r}"))
            with contextlib.suppress(Exception):
                ray.cancel(self._task)

    def _forward(self, exp_id: str, config_json: str) -> None:
        self._task = task = None
        epochs: list[tuple[int, dict]] = []  # forwarded so far: a cancel summarizes them
        cancelled = False
        while True:
            try:
                if task is None:
                    task = self._task = experiment_task.options(num_cpus=self.cpus).remote(
                        exp_id, config_json, self.cpus)
                if not cancelled and (self.cancel.value or self._killed):
                    cancelled = True
                    ray.cancel(task)
                ready, _ = ray.wait([task], timeout=WAIT_SECONDS)
                if not ready:
                    continue
                msg = ray.get(next(task))
            except StopIteration:
                self.conn.send(("error", exp_id, "the Ray task ended without a result"))
                return
            except TaskCancelledError:
                if not self._killed:
                    self.conn.send(("finished", exp_id, "cancelled", _summary(config_json,
                                                                              epochs)))
                return
            except RayError as e:  # the worker, its node or the cluster is gone
                if not self._killed:
                    self.conn.send(("error", exp_id, f"the Ray task was lost ({type(e).__name__}):"
                                                 f" {_first_line(e)}; the epochs trained "
                                                     "before are kept"))
                return
            if msg[0] == "epochs":
                epochs += msg[2]
            if not self._killed:
                self.conn.send(msg)
            if msg[0] in FINAL:
                return


def _summary(config_json: str, epochs: list[tuple[int, dict]]) -> dict:
    """The summary of what trained before a cancel, as the trainer would have made it."""
    config = ExperimentConfig.model_validate_json(config_json)
    specs = plan_runs(config)
    per_run: list[list[dict]] = [[] for _ in specs]
    for run, metrics in epochs:
        per_run[run].append({k: v for k, v in metrics.items() if k != "ended_at"})
    return summarize([run_dict(s, per_run[s.index]) for s in specs], config.task)


def _first_line(e: Exception) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__


@dataclass
class RayExecutor(LocalExecutor):
    """LocalExecutor whose workers are slots following Ray tasks (see module docstring)."""

    address: str | None = None  # None: a private one-machine Ray
    cpus_per_experiment: int = 1
    max_running: int | None = None  # None: the cluster's CPUs / cpus_per_experiment

    def start(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.address, namespace="dropout-playground",
                     logging_level=logging.WARNING, log_to_driver=False,
                     include_dashboard=False if self.address is None else None)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = self.max_running or max(1, cpus // self.cpus_per_experiment)
        self.threads = self.cpus_per_experiment
        log.info("Ray executor: %d experiments at once on %d CPUs", self.workers, cpus)
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        ray.shutdown()

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        cancel = SimpleNamespace(value=0)
        slot = _SlotThread(child, cancel, self.cpus_per_experiment)
        slot.start()
        return _Worker(slot, parent, cancel)
