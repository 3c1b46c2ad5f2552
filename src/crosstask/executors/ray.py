"""The ``ray`` executor: jobs on a Ray cluster (or a local Ray instance), results committed by the driver.

* Training jobs (and pattern-dynamics retraining) run as Ray tasks with the experiment's
  ``resources.train`` request; a task whose worker process dies is run again (``max_retries``).
* Evaluation and pattern jobs run on long-lived actors with the ``resources.eval`` request. Each
  actor holds one base model (or one vLLM engine) and takes many jobs, switching adapters on it; an
  actor whose process dies is restarted and its job retried (``max_restarts``).
* Results come back to the driver, which commits each as it arrives (:class:`~crosstask.workspace.Workspace`):
  workers never write the store. Killing the driver and running again resumes from the store.
* With ``shared_storage: false`` (workers do not see the run directory) trained adapters travel back
  as bytes and are sent to the actors that read them through Ray's object store.

Actors hold their resources while they live, so an actor with no job to take while training jobs
wait is released, and made again when evaluation work is ready.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ..config import ResourceRequest, Resources
from ..errors import CrosstaskError
from ..jobs import AdapterRef, Job, Result, Worker, folder_bytes, with_adapters
from ..progress import Reporter
from .base import Executor, StageBars, in_dependency_order

ON_ACTORS = ("eval", "pattern")  # job kinds the evaluation actors take; the others are tasks


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CrosstaskError("the ray executor needs Ray: pip install 'crosstask[ray]' (or ray==2.60.0)") from None
    return ray


def _use_threads(num_cpus: float) -> None:
    """One torch thread per CPU the job was given: several workers on one machine must not oversubscribe it."""
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


def _placement(started: float) -> dict:
    import ray

    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "resources": context.get_assigned_resources(),
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()], "started": started, "finished": time.time()}


def _fetch_shipped(job: Job) -> Job:
    """The job with adapter bytes fetched from Ray's object store (refs inside a job are not resolved by Ray)."""
    import ray

    def fetched(adapter: AdapterRef) -> AdapterRef:
        if adapter.files is None or isinstance(adapter.files, dict):
            return adapter
        return replace(adapter, files=ray.get(adapter.files))

    return with_adapters(job, fetched)


def _run_task(job: Job, scratch_dir: Optional[str], ship_files: bool, num_cpus: float) -> Result:
    """A training (or dynamics) job on a Ray worker."""
    started = time.time()
    _use_threads(num_cpus)
    worker = Worker(Path(scratch_dir) if scratch_dir else None, ship_files=ship_files)
    try:
        result = worker.run(_fetch_shipped(job))
    finally:
        worker.close()
    if hasattr(result, "metrics"):
        result.metrics["ray"] = _placement(started)
    return result


class _EvalActor:
    """One base model (or engine) kept loaded across many evaluation and pattern jobs."""

    def __init__(self, num_cpus: float):
        _use_threads(num_cpus)
        self.worker = Worker()

    def run(self, job: Job) -> Result:
        return self.worker.run(_fetch_shipped(job))


def _amounts(request: ResourceRequest) -> dict[str, float]:
    """The resources a request asks for, by Ray's names, leaving out what it asks none of."""
    wanted = {"CPU": request.num_cpus, "GPU": request.num_gpus, **request.custom}
    return {kind: amount for kind, amount in wanted.items() if amount}


def _fits(have: dict, request: ResourceRequest) -> bool:
    return all(have.get(kind, 0) >= amount for kind, amount in _amounts(request).items())


def _options(request: ResourceRequest) -> dict:
    options = {"num_cpus": request.num_cpus, "num_gpus": request.num_gpus}
    if request.custom:
        options["resources"] = dict(request.custom)
    return options


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: Optional[str] = None, resources: Optional[Resources] = None, max_retries: int = 3,
                 max_restarts: int = 3, eval_workers: Optional[int] = None, shared_storage: bool = True):
        self.address, self.resources = address, resources or Resources()
        self.max_retries, self.max_restarts = max_retries, max_restarts
        self.eval_workers, self.shared_storage = eval_workers, shared_storage

    @classmethod
    def from_settings(cls, settings, resources) -> RayExecutor:
        return cls(settings.address, resources, settings.max_retries, settings.max_restarts, settings.eval_workers,
                   settings.shared_storage)

    # --- the cluster -------------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Join the cluster (or start a local instance); True when this call started Ray."""
        ray = _import_ray()
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except ConnectionError as error:
            raise CrosstaskError(f"cannot join the Ray cluster at {self.address!r}: "
                                 f"{str(error).splitlines()[0]}") from None
        return True

    def _check_feasible(self) -> None:
        """Fail in one line, before any work, when no node could ever run a job: Ray would wait forever."""
        import ray

        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        for role, request in (("train", self.resources.train), ("eval", self.resources.eval)):
            wanted = _amounts(request)
            if not any(_fits(node, request) for node in nodes):
                have = ", ".join(f"{kind} {amount:g}" for kind, amount in sorted(ray.cluster_resources().items())
                                 if kind in wanted or kind in ("CPU", "GPU"))
                ask = ", ".join(f"{kind} {amount:g}" for kind, amount in wanted.items())
                raise CrosstaskError(f"resources.{role} asks for {ask} per job, but no node of the Ray cluster has "
                                     f"that (cluster total: {have})")

    def _capacity(self) -> int:
        """How many evaluation actors the cluster could hold at once."""
        import ray

        per_node = [min((int(node["Resources"].get(kind, 0) // amount)
                         for kind, amount in _amounts(self.resources.eval).items()), default=1)
                    for node in ray.nodes() if node.get("Alive")]
        return max(1, sum(per_node))

    def check(self) -> None:
        """Join the cluster and check that some node can run each kind of job (Ray would wait forever)."""
        self._started_ray = self._connect() or getattr(self, "_started_ray", False)
        self._check_feasible()

    # --- running -----------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], scratch_dir: Path, reporter: Reporter) -> Iterator[Result]:
        ray = _import_ray()
        self.check()
        try:
            yield from self._schedule(ray, in_dependency_order(jobs), scratch_dir, reporter)
        finally:
            if self._started_ray:  # a local instance this executor started ends with the run
                ray.shutdown()
                self._started_ray = False

    def _schedule(self, ray, jobs: list[Job], scratch_dir: Path, reporter: Reporter) -> Iterator[Result]:
        ship = not self.shared_storage
        task = ray.remote(_run_task).options(max_retries=self.max_retries, **_options(self.resources.train))
        actor_class = ray.remote(_EvalActor).options(max_restarts=self.max_restarts,
                                                     max_task_retries=self.max_restarts,
                                                     **_options(self.resources.eval))
        limit = self.eval_workers or self._capacity()
        batch_ids = {job.id for job in jobs}
        waiting = list(jobs)
        done: set[str] = set()
        running: dict = {}  # object ref -> (job, actor or None)
        idle: list = []
        actors: list = []
        shipped: dict[str, object] = {}  # adapter key -> object ref of its files
        stages = StageBars(reporter, jobs)

        def ready(job: Job) -> bool:
            return all(need in done or need not in batch_ids for need in job.needs)

        def prepared(job: Job) -> Job:
            return self._with_shipped_adapters(ray, job, shipped) if ship else job

        try:
            while waiting or running:
                for job in [job for job in waiting if ready(job) and job.kind not in ON_ACTORS]:
                    waiting.remove(job)
                    ref = task.remote(prepared(job), None if ship else str(scratch_dir), ship,
                                      self.resources.train.num_cpus)
                    running[ref] = (job, None)
                actor_jobs = [job for job in waiting if ready(job) and job.kind in ON_ACTORS]
                while len(actor_jobs) > len(idle) and len(actors) < limit:
                    actor = actor_class.remote(self.resources.eval.num_cpus)
                    actors.append(actor)
                    idle.append(actor)
                while actor_jobs and idle:
                    job, actor = actor_jobs.pop(0), idle.pop(0)
                    waiting.remove(job)
                    running[actor.run.remote(prepared(job))] = (job, actor)
                if idle and not actor_jobs and self._training_starved(ray, running):
                    for actor in idle:  # nothing for it to do while training waits: give its resources back
                        actors.remove(actor)
                        ray.kill(actor)
                    idle.clear()
                if not running:
                    raise CrosstaskError(f"{len(waiting)} job(s) wait for jobs that never ran: {waiting[0].id}")
                (ref,), _ = ray.wait(list(running), num_returns=1)
                job, actor = running.pop(ref)
                result = self._result(ray, ref, job)
                if actor is not None:
                    idle.append(actor)
                stages.advance(job.kind)
                yield result
                done.add(job.id)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            for actor in actors:
                ray.kill(actor)

    def _training_starved(self, ray, running: dict) -> bool:
        """Whether a submitted training task may be waiting for resources that idle actors hold."""
        if not any(job.kind not in ON_ACTORS for job, _ in running.values()):
            return False
        return not _fits(ray.available_resources(), self.resources.train)

    @staticmethod
    def _result(ray, ref, job: Job) -> Result:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause
            if isinstance(cause, CrosstaskError):
                raise cause from None
            raise CrosstaskError(f"job {job.id} failed on a Ray worker: {type(cause).__name__}: "
                                 f"{str(cause).splitlines()[0] if str(cause) else ''}") from error
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.ActorDiedError) as error:
            raise CrosstaskError(f"job {job.id}: its Ray worker died and the retries are used up "
                                 f"({type(error).__name__})") from error

    @staticmethod
    def _with_shipped_adapters(ray, job: Job, shipped: dict) -> Job:
        """The job with each adapter's folder sent through the object store (once per adapter key)."""

        def ship(adapter: AdapterRef) -> AdapterRef:
            if adapter.key not in shipped:
                shipped[adapter.key] = ray.put(folder_bytes(Path(adapter.path)))
            return replace(adapter, files=shipped[adapter.key])

        return with_adapters(job, ship)
