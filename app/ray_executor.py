"""Training on a Ray cluster: every experiment (a sweep included, as one batched model) is one
Ray task on any node, streaming its epochs back as they happen.

`RayExecutor` is the dispatcher of app.jobs (`PoolExecutor`) with `RaySlot`s in place of worker
processes: each a thread in the server process that follows one Ray task at a time and
forwards its messages in the protocol a local worker speaks (app.worker). So the queue, the
fair order, the per-person limits, the time limit and the store/publish path are the same code
for both executors.

- The task is a Ray generator: it yields each message (a batch of epochs, snapshots, the
  final summary) the moment the trainer produces it; the slot forwards it to the dispatcher,
  which stores and publishes it.
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
import multiprocessing as mp
import os
import queue
import threading
from dataclasses import dataclass

import ray
from ray.exceptions import RayError, TaskCancelledError

from app.executor import Publish
from app.jobs import PoolExecutor
from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs, run_dict
from app.ml.summary import summarize
from app.store import Store

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



class RaySlot:
    """One experiment at a time on Ray, followed by a thread of the server: a slot of the
    dispatcher (app.jobs.Slot), not a process. The thread starts each task it is given, and
    forwards the task's messages on `conn` in app.worker's protocol, whatever the task's end
    (done, cancelled, lost). Its own end is told by `sentinel`, as a process's is."""

    def __init__(self, cpus: int):
        self.cpus = cpus
        self.conn, self._out = mp.Pipe(duplex=False)  # read by the dispatcher, written here
        self.sentinel, self._done = os.pipe()  # readable once the thread has ended
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # (exp_id, config_json) | None
        self._cancel = threading.Event()  # set: stop the current task
        self._killed = False  # set: stop at once, say nothing more
        self._exit_code: int | None = None
        self._task = None
        self._thread = threading.Thread(target=self._run, name="ray-slot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def train(self, exp_id: str, config_json: str, runs: list[int] | None = None,
              guest: bool = False) -> None:
        assert runs is None and not guest, "Ray slots train whole experiments (shares=False)"
        self._cancel.clear()
        self._jobs.put((exp_id, config_json))

    def cancel(self, guest: bool = False) -> None:
        self._cancel.set()

    def stop(self) -> None:
        self._jobs.put(None)

    def kill(self) -> None:
        """Cancel the running task by force and say nothing more (the executor records the
        experiment's end: it stops, or this slot did not stop within the grace)."""
        self._killed = True

    def join(self, timeout: float | None = None) -> int | None:
        self._thread.join(10.0 if timeout is None else timeout)  # never forever: Ray may hang
        if self._thread.is_alive():
            return None
        if self._out is not None:  # ended: its ends of the pipes are no longer needed
            os.close(self.sentinel)
            self._out.close()
            self._out = None
        return self._exit_code

    def __repr__(self) -> str:
        return f"Ray slot {self._thread.native_id}"

    def _run(self) -> None:
        code = 1  # an unexpected error ends the thread (the dispatcher replaces the slot)
        try:
            self._out.send(("ready",))
            while not self._killed:
                try:
                    job = self._jobs.get(timeout=WAIT_SECONDS)
                except queue.Empty:
                    continue
                if job is None:
                    break
                self._follow(*job)
            code = 0
        except (EOFError, OSError):
            code = 0  # the executor closed its end
        finally:
            self._exit_code = code
            os.close(self._done)

    def _follow(self, exp_id: str, config_json: str) -> None:
        """Forward one task's messages until its end, whatever the end is; an unexpected
        error ends the experiment (failed) and cancels the task, never the slot."""
        try:
            self._forward(exp_id, config_json)
        except Exception as e:
            log.exception("Ray slot error")
            if not self._killed:
                self._out.send(("error", exp_id, f"the Ray slot failed: {e!r}"))
            with contextlib.suppress(Exception):
                ray.cancel(self._task)

    def _forward(self, exp_id: str, config_json: str) -> None:
        self._task = task = None
        epochs: list[tuple[int, dict]] = []  # forwarded so far: a cancel summarizes them
        cancelled = False
        while True:
            if self._killed:  # the dispatcher gave up on it (stopping, or a hung task)
                if task is not None:
                    with contextlib.suppress(Exception):
                        ray.cancel(task, force=True)
                return
            try:
                if task is None:
                    task = self._task = experiment_task.options(num_cpus=self.cpus).remote(
                        exp_id, config_json, self.cpus)
                if not cancelled and (self._cancel.is_set() or self._killed):
                    cancelled = True
                    ray.cancel(task)
                ready, _ = ray.wait([task], timeout=WAIT_SECONDS)
                if not ready:
                    continue
                msg = ray.get(next(task))
            except StopIteration:
                self._out.send(("error", exp_id, "the Ray task ended without a result"))
                return
            except TaskCancelledError:
                if not self._killed:
                    self._out.send(("finished", exp_id, "cancelled",
                                    _summary(config_json, epochs)))
                return
            except RayError as e:  # the worker, its node or the cluster is gone
                if not self._killed:
                    self._out.send(("error", exp_id, f"the Ray task was lost "
                                                     f"({type(e).__name__}): {_first_line(e)}; "
                                                     "the epochs trained before are kept"))
                return
            if msg[0] == "epochs":
                epochs += msg[2]
            if not self._killed:
                self._out.send(msg)
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
class RaySlots:
    """The Ray executor's slots (app.jobs.Slots): as many as the cluster has CPUs for."""

    address: str | None = None  # None: a private one-machine Ray
    cpus_per_experiment: int = 1  # Ray CPUs a task asks for, and its torch threads
    max_running: int | None = None  # None: the cluster's CPUs / cpus_per_experiment
    shares = False  # a Ray task cannot take a guest: sweeps are not shared out (app.sharing)

    def open(self) -> int:
        if not ray.is_initialized():
            ray.init(address=self.address, namespace="dropout-playground",
                     logging_level=logging.WARNING, log_to_driver=False,
                     include_dashboard=False if self.address is None else None)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = self.max_running or max(1, cpus // self.cpus_per_experiment)
        log.info("Ray executor: %d experiments at once on %d CPUs", slots, cpus)
        return slots

    def new(self) -> RaySlot:
        return RaySlot(self.cpus_per_experiment)

    def close(self) -> None:
        ray.shutdown()


class RayExecutor(PoolExecutor):
    """The pool with Ray slots (see module docstring); how many is set from the cluster in
    start(). Only a constructor: the behaviour is the pool's and the slots'."""

    def __init__(self, store: Store, publish: Publish, max_queued: int, *,
                 address: str | None = None, cpus_per_experiment: int = 1,
                 max_running: int | None = None, **limits) -> None:
        super().__init__(store, publish, RaySlots(address, cpus_per_experiment, max_running),
                         max_queued, **limits)
