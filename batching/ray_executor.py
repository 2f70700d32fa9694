"""The Ray executor: a plan run as the local executor runs it, each engine replica in a Ray actor.

Everything above the engines is the local executor's own code (``batching.executor``): phases
in order per device and devices side by side, waves of ready requests, resume from the run
store, the generation cache, composing aggregation requests from their inputs, ``skip``,
``on_delta`` and the progress events. What changes is where an engine lives: each is an
``ActorEngine`` (``batching.ray_engine``), so the driver still composes every request, hears
every result as it comes back and writes it to the run store and the cache itself; a run
started on Ray resumes on the local executor and the other way round, since both key the store
by ``request_key``.

Placement follows the plan. The devices its phases use become the bundles of one placement
group (strategy SPREAD: on different nodes where the cluster has them), each of
``cpus_per_device`` CPUs and, where the plan has a local model (vLLM) and the cluster has GPUs,
one GPU (more where a model on that device is tensor parallel: ``device_gpus``). A model's actor
goes into its phase's bundle and asks for its share of it: the CPUs split evenly between the
phase's models, the GPUs between its local models by their declared memory (``gpu_shares``,
``batching.ray_cluster``). The group is made when the first actor is needed (a run answered
from the store or the cache touches no cluster) and removed at the end of the run, with every
actor it started, also after an error or Ctrl-C (which also shuts down a Ray the run started on
this machine, so none of its processes outlives the interrupted one). Engines are not kept warm
between runs on Ray. ``RunMetrics.retried`` counts the requests sent again after an actor or its
node was lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batching.cache import GenerationCache
from batching.deltas import DeltaListener
from batching.engine_calls import loading_phase
from batching.engines.base import EngineFactory
from batching.engines.kinds import engine_kind
from batching.executor import Executor
from batching.plan import Phase, Plan
from batching.ray_cluster import connect, device_gpus, gpu_shares, require_ray, share, stop_started
from batching.ray_engine import ActorEngine, ActorPolicy
from batching.results import ProgressCallback, RunResult
from batching.runstore import RunStore
from batching.spec import ExpertSpec
from common.errors import BadInput, Unavailable
from common.tasks import Compose, Task

__all__ = ["ActorPolicy", "RayExecutor"]

log = logging.getLogger(__name__)


class _ClusterFailed(Exception):
    """The cluster could not be reached or could not hold the run: raised past the executor's
    per-model handling (which would fail each model's tasks one by one) to end the run with
    ``error``."""

    def __init__(self, error: Unavailable) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Run:
    """One run's placement: the plan, its placement group once made, and the actors started."""

    plan: Plan
    specs: Mapping[str, ExpertSpec]
    phase_of: dict[str, Phase] = field(default_factory=dict)  # model -> the phase loading it now
    group: Any = None
    bundle_of: dict[int, int] = field(default_factory=dict)  # device -> bundle index
    gpus: bool = False
    device_gpus: dict[int, int] = field(default_factory=dict)
    actors: list[Any] = field(default_factory=list)
    retried: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class RayExecutor(Executor):
    """Runs plans with each engine replica in a Ray actor (see the module's docstring).

    ``engine_factory`` makes the engines, called in the actors (it is pickled to them); the rest
    as ``Executor``. ``address``: the cluster to join; ``policy``: how actors are fed and
    replaced; ``cpus_per_device``: the CPUs each of the plan's devices reserves; ``code_root``:
    the project's folder, whose code the workers of a Ray started or joined here import first."""

    def __init__(
        self,
        engine_factory: EngineFactory,
        store: RunStore | None = None,
        progress: ProgressCallback | None = None,
        *,
        address: str | None = None,
        on_delta: DeltaListener | None = None,
        skip: Callable[[Task], str | None] | None = None,
        cache: GenerationCache | None = None,
        cache_reads: bool = True,
        policy: ActorPolicy | None = None,
        cpus_per_device: float = 1.0,
        code_root: Path | None = None,
    ) -> None:
        require_ray()
        if not cpus_per_device > 0:
            raise BadInput(f"cpus_per_device must be positive, got {cpus_per_device}")
        super().__init__(
            self._actor_engine,
            store,
            progress,
            None,  # no warm engines: a run starts and ends its actors
            None,  # cores are Ray's to give
            on_delta=on_delta,
            skip=skip,
            cache=cache,
            cache_reads=cache_reads,
        )
        self.factory = engine_factory
        self.address = address
        self.policy = policy or ActorPolicy()
        self.cpus_per_device = cpus_per_device
        self.code_root = code_root
        self.placed: dict[str, dict[str, str]] = {}
        """Model -> where its actor last loaded (node id, host, process id)."""
        self._running = threading.Lock()
        self._run: _Run | None = None

    def run(
        self,
        plan: Plan,
        tasks: Sequence[Task],
        specs: Mapping[str, ExpertSpec],
        compose: Compose,
        *,
        run_id: str = "run",
    ) -> RunResult:
        """As ``Executor.run``; its actors and placement group are gone when it returns or raises."""
        with self._running:
            self._run = run = _Run(plan, specs)
            interrupted = False
            try:
                result = super().run(plan, tasks, specs, compose, run_id=run_id)
            except _ClusterFailed as failed:
                raise failed.error from failed.error.__cause__
            except KeyboardInterrupt:
                interrupted = True
                raise
            finally:
                self._run = None
                self._end(run)
                if interrupted:
                    stop_started()
            result.metrics.retried += run.retried
            return result

    def actors(self) -> dict[str, Any]:
        """The latest actor of each model of the run in progress (for tools and tests)."""
        run = self._run
        if run is None:
            return {}
        return {model: actor for model, actor in run.actors if actor is not None}

    # -- the executor's hooks -------------------------------------------------------------------

    def _prepare_loads(self, models: list[str], phase: Phase, specs: Mapping[str, ExpertSpec]) -> None:
        """Note the phase each model is loaded for (its actor goes into that device's bundle).
        Recordings are read where the replay engines run: in their actors, not here."""
        run = self._current()
        with run.lock:
            run.phase_of.update({model: phase for model in models})

    # -- placement ------------------------------------------------------------------------------

    def _current(self) -> _Run:
        if self._run is None:
            raise BadInput("a Ray engine is made only while its executor runs a plan")
        return self._run

    def _actor_engine(self, spec: ExpertSpec, cpus: tuple[int, ...] | None = None) -> ActorEngine:
        run = self._current()
        try:
            options = self._options(spec, run)
        except Unavailable as exc:
            raise _ClusterFailed(exc) from exc

        def started(actor: Any) -> None:
            with run.lock:
                run.actors.append((spec.name, actor))

        def placed(model: str, where: dict[str, str]) -> None:
            self.placed[model] = where
            log.info("ray: %s loaded on node %s (%s, pid %s)", model, where["node"][:12], where["host"], where["pid"])

        def retried(n: int) -> None:
            with run.lock:
                run.retried += n

        return ActorEngine(
            spec,
            self.factory,
            options,
            self.policy,
            on_start=started,
            on_placed=placed,
            on_retry=retried,
            closed=lambda: run.closed,
        )

    def _options(self, spec: ExpertSpec, run: _Run) -> dict[str, Any]:
        """The actor's Ray options: its share of its phase's bundle."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = self._group(run)
        with run.lock:
            phase = loading_phase() or run.phase_of[spec.name]  # a replica: its own device's phase
        options: dict[str, Any] = {
            "num_cpus": share(self.cpus_per_device, len(phase.models)),
            "max_restarts": 0,  # a lost actor is replaced by its engine, which knows what it had in flight
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=run.bundle_of[phase.device]
            ),
        }
        if run.gpus and engine_kind(spec).local:
            options["num_gpus"] = gpu_shares(phase.models, run.specs, run.device_gpus[phase.device])[spec.name]
        return options

    def _group(self, run: _Run) -> Any:
        """The run's placement group, made (and waited for) on first use."""
        with run.lock:
            if run.group is not None:
                return run.group
            if run.closed:
                raise Unavailable("the run has ended")
            ray = connect(self.address, self.code_root)
            from ray.util.placement_group import placement_group

            devices = sorted({p.device for p in run.plan.phases})
            local = any(engine_kind(run.specs[m]).local for p in run.plan.phases for m in p.models)
            run.gpus = local and ray.cluster_resources().get("GPU", 0) > 0
            run.device_gpus = device_gpus(run.plan, run.specs)
            bundles = [
                {"CPU": self.cpus_per_device, **({"GPU": float(run.device_gpus[d])} if run.gpus else {})}
                for d in devices
            ]
            bundle = bundles[0] if len({str(b) for b in bundles}) == 1 else bundles
            run.bundle_of = {device: index for index, device in enumerate(devices)}
            group = placement_group(bundles, strategy="SPREAD")
            try:
                ray.get(group.ready(), timeout=self.policy.place_timeout_s)
            except ray.exceptions.GetTimeoutError as exc:
                ray.util.remove_placement_group(group)
                raise Unavailable(
                    f"the Ray cluster cannot hold {len(devices)} device(s) of {bundle} "
                    f"within {self.policy.place_timeout_s:g} s (it has {ray.cluster_resources()})"
                ) from exc
            log.info("ray: %d device(s) placed as bundles of %s", len(devices), bundle)
            run.group = group
            return group

    def _end(self, run: _Run) -> None:
        """End every actor the run started and remove its placement group."""
        with run.lock:
            run.closed = True
            actors, group = list(run.actors), run.group
        if not actors and group is None:
            return
        import ray

        if not ray.is_initialized():
            return
        for _, actor in actors:
            try:
                ray.kill(actor)
            except (ValueError, ray.exceptions.RayError):  # already gone
                pass
        if group is not None:
            try:
                ray.util.remove_placement_group(group)
            except (ValueError, ray.exceptions.RayError) as exc:
                log.info("ray: the run's placement group was not removed: %s", exc)
