"""The Ray executor: units of work spread over a Ray cluster (one machine or many), resumable.

The driver (this process) plans units from the families' missing SAE records, submits each as a Ray
task sized by its estimated memory, writes the records of each unit as it finishes, retries a unit
whose worker died a bounded number of times, and hands each family's results over as soon as all its
SAEs are recorded. Only small result dictionaries travel through Ray; activations stay on each node's
disk (``$L0EVAL_CACHE/activations``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from l0eval.downstream.suite import DownstreamConfig
from l0eval.errors import L0EvalError
from l0eval.executors.records import FamilyRecords
from l0eval.executors.units import Unit, plan_units, run_unit
from l0eval.family.model import Family

try:
    import ray
except ImportError as exc:  # the CLI imports this module only for --executor ray
    raise L0EvalError("--executor ray needs Ray: pip install 'l0eval[ray]' (or pip install ray)") from exc

# GPU shares a unit may ask for: a unit needing a quarter of a GPU's memory shares the GPU with others
GPU_SHARE_STEP = 0.25


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance (or use the one already started)
    device: str = "cpu"  # "cuda": each unit gets GPU shares; "cpu": one CPU each
    downstream: DownstreamConfig | None = None  # probing/absorption options, as `--metrics` etc. give them
    unit_memory_gb: float = 16.0  # one GPU's memory (CPU: memory one unit may use); shards are cut to fit it
    max_attempts: int = 3  # per unit; a worker that dies costs one attempt
    threads: int | None = None  # torch threads in every worker (the driver's: l0eval.torch_threads)
    progress: bool = True


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)  # family names whose results were handed over
    failed: list[str] = field(default_factory=list)  # "unit: reason" lines


def run_on_ray(families: list[Family], options: RayOptions,
               on_family: Callable[[dict], None]) -> Outcome:
    """Evaluate ``families`` on Ray; ``on_family(results)`` is called as each family completes."""
    started_here = _connect(options.address)
    try:
        _check_resources(options.device)
        return _Driver(families, options, on_family).run()
    finally:
        if started_here:
            ray.shutdown()


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local one; False when the caller already did."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise L0EvalError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from exc
    return True


def _check_resources(device: str) -> None:
    if device.startswith("cuda") and not ray.cluster_resources().get("GPU"):
        raise L0EvalError(f"--device {device} asked for, but the Ray cluster has no GPU")


class _Driver:
    def __init__(self, families: list, options: RayOptions, on_family: Callable[[dict], None]):
        self.options = options
        self.on_family = on_family
        self.records = {family.name: FamilyRecords(family, options.device, options.downstream) for family in families}
        self.task = ray.remote(max_retries=0)(run_unit)  # retries are counted here, to report them
        self.pending: dict = {}  # ObjectRef -> (unit, attempt)
        self.open_units: dict[str, int] = {}  # family -> units not yet finished
        self.failed_families: set[str] = set()
        self.outcome = Outcome()
        self.progress = _Progress(families, self.records, options.progress)
        # a request above every node's memory would wait forever: such a unit gets a node to itself
        self.largest_node_memory = max(node["Resources"].get("memory", 1) for node in ray.nodes() if node["Alive"])

    def run(self) -> Outcome:
        budget = int(self.options.unit_memory_gb * 2**30)
        units = []
        for name, records in self.records.items():
            planned = plan_units(records.family, records.missing(), budget)
            self.open_units[name] = len(planned)
            units += planned
        for name, count in self.open_units.items():
            if count == 0:
                self._family_done(name)  # every SAE already recorded by an earlier run
        for unit in sorted(units, key=lambda u: u.estimated_bytes, reverse=True):  # big first: shorter tail
            self._submit(unit, attempt=1)
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            unit, attempt = self.pending.pop(ready[0])
            self._collect(ready[0], unit, attempt)
        return self.outcome

    def _submit(self, unit: Unit, attempt: int) -> None:
        cache_root = os.environ.get("L0EVAL_CACHE")
        ref = self.task.options(**self._resources(unit)).remote(unit, self._worker_device(), cache_root,
                                                                 self.options.downstream, self.options.threads)
        self.pending[ref] = (unit, attempt)

    def _resources(self, unit: Unit) -> dict:
        if self.options.device.startswith("cuda"):
            share = math.ceil(unit.estimated_bytes / (self.options.unit_memory_gb * 2**30) / GPU_SHARE_STEP)
            return {"num_gpus": min(1.0, max(1, share) * GPU_SHARE_STEP)}
        return {"num_cpus": 1, "memory": min(max(unit.estimated_bytes, 1), self.largest_node_memory)}

    def _worker_device(self) -> str:
        return "cuda" if self.options.device.startswith("cuda") else "cpu"  # Ray hides the other GPUs

    def _collect(self, ref, unit: Unit, attempt: int) -> None:
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            self._failed(unit, attempt, cause, retry=not isinstance(cause, L0EvalError))
            return
        except ray.exceptions.RayError as exc:  # the worker or its node died
            self._failed(unit, attempt, exc, retry=True)
            return
        name = unit.family.name
        self.records[name].write(unit, outcome)
        self.open_units[name] -= 1
        if self.open_units[name] == 0 and name not in self.failed_families:
            self._family_done(name)
        self.progress.unit_done(unit, outcome, attempt)

    def _failed(self, unit: Unit, attempt: int, error: BaseException, retry: bool) -> None:
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        if retry and attempt < self.options.max_attempts:
            self.progress.note(f"{unit.name} attempt {attempt} failed ({reason}); retrying")
            self._submit(unit, attempt + 1)
            return
        self.outcome.failed.append(f"{unit.name} failed after {attempt} attempt(s): {reason}")
        self.progress.note(self.outcome.failed[-1])
        self.failed_families.add(unit.family.name)  # its other units still record their SAEs for a re-run

    def _family_done(self, name: str) -> None:
        self.on_family(self.records[name].assemble())
        self.outcome.finished.append(name)
        self.progress.family_done()


class _Progress:
    """Progress on the driver's stderr: units, families and SAEs done, and SAE throughput."""

    def __init__(self, families: list, records: dict[str, FamilyRecords], enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()
        self.families = (0, len(families))
        self.saes_total = sum(len(r.ids) for r in records.values())
        self.saes_done = self.saes_total - sum(len(r.missing()) for r in records.values())
        self.sae_tokens = 0
        self.note(f"{self.saes_done}/{self.saes_total} SAEs already recorded")

    def unit_done(self, unit: Unit, outcome: dict, attempt: int) -> None:
        self.saes_done += len(unit.member_ids)
        self.sae_tokens += unit.tokens * len(unit.member_ids)
        rate = self.sae_tokens / max(time.monotonic() - self.started, 1e-9)
        self.note(f"{unit.name} done on {outcome['host']} in {outcome['seconds']:.1f}s (attempt {attempt}) | "
                  f"families {self.families[0]}/{self.families[1]}, SAEs {self.saes_done}/{self.saes_total}, "
                  f"{rate:,.0f} tokens/s through SAEs")

    def family_done(self) -> None:
        self.families = (self.families[0] + 1, self.families[1])

    def note(self, line: str) -> None:
        if self.enabled:
            print(f"[ray {time.monotonic() - self.started:5.0f}s] {line}", file=sys.stderr, flush=True)
