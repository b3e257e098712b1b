"""Where a parallel scan's tasks run (:mod:`specdec_diag.ingest.parallel` decides what the tasks are).

An :class:`Executor` maps a module-level function over picklable tasks and yields the results in
task order, so the merged tables do not depend on which task finished first:

* :class:`SerialExecutor`: in this process, one task after the other (``--workers 1``);
* :class:`ProcessExecutor`: ``N - 1`` ``spawn``-ed processes plus the caller (``--workers N``);
  polars is limited to ``cores // N`` threads in each child, so N workers do not fight over the cores;
* :class:`RayExecutor`: Ray tasks on a Ray cluster (``--executor ray[:ADDRESS]``), one CPU each.

Ray is an optional dependency (``pip install 'specdec-diag[scale]'``), imported only here and
only when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: what ``--executor`` accepts
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs ``fn`` on every task; results come back in task order."""

    name: str
    workers: int

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class SerialExecutor:
    """Every task in this process, in order: the reference the parallel executors must equal."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        for t in tasks:
            yield fn(t)

    def close(self) -> None:
        pass


def _limit_threads(n: int) -> None:
    """Pool initializer: runs before the worker imports polars (spawned processes start clean)."""
    os.environ["POLARS_MAX_THREADS"] = str(n)


class ProcessExecutor:
    """A local process pool of ``workers - 1`` children plus the caller: the caller takes tasks from
    the back of the queue while the children start (a spawned child needs about a second to import
    polars) and work from the front. ``spawn``, not ``fork``: forking a process whose polars thread
    pool is running can deadlock the child (polars warns about it)."""

    name = "process"

    def __init__(self, workers: int):
        self.workers = max(2, workers)
        threads = max(1, available_cores() // self.workers)
        self._pool = ProcessPoolExecutor(max_workers=self.workers - 1,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_limit_threads, initargs=(threads,))

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        futures = [self._pool.submit(fn, t) for t in tasks]
        mine: dict[int, R] = {}
        try:
            # a queued task can be cancelled, a started one cannot: children start from the front,
            # so the caller works back from the end until it meets them
            for j in range(len(futures) - 1, -1, -1):
                if not futures[j].cancel():
                    break
                mine[j] = fn(tasks[j])
            for i, fut in enumerate(futures):
                yield mine.pop(i) if i in mine else fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Ray tasks, one CPU each, on the cluster at ``address`` (``auto``: the one this machine belongs
    to, e.g. inside a KubeRay pod; None: the running local instance, else a new one). The cluster's
    workers need ``specdec-diag`` importable (installed in the image, or a ``runtime_env``)."""

    name = "ray"

    def __init__(self, address: str | None = None, runtime_env: dict[str, Any] | None = None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--executor ray needs Ray: pip install 'specdec-diag[scale]'") from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address or None, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        env = {"env_vars": {"POLARS_MAX_THREADS": "1"}}
        if runtime_env:
            env = {**runtime_env, "env_vars": {**runtime_env.get("env_vars", {}), **env["env_vars"]}}
        self._options = {"num_cpus": 1, "runtime_env": env, "max_retries": 2}

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        remote = self._ray.remote(fn).options(**self._options)
        refs = [remote.remote(t) for t in tasks]
        done = 0
        try:
            for ref in refs:
                yield self._ray.get(ref)
                done += 1
        finally:
            self._cancel_pending(refs[done:])

    def _cancel_pending(self, refs: list[Any]) -> None:
        """Cancel the tasks a stopped scan no longer needs, only those not finished: cancelling a task
        while it completes aborts the driver process in Ray 2.60 ("Check failed: Tried to complete task
        that was not pending" in task_manager.cc), which took a whole pytest run down with it."""
        if not refs:
            return
        try:
            _ready, pending = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        except Exception:  # noqa: BLE001 - the cluster is gone: nothing left to cancel
            return
        for ref in pending:
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001 - it finished in between; nothing to do
                pass

    def close(self) -> None:
        pass  # the Ray instance outlives the scan (the caller may scan again); ray.shutdown() ends it


def parse_executor(spec: str | None) -> tuple[str, str | None]:
    """``local`` / ``ray`` / ``ray:ADDRESS`` -> (kind, address). Raises ValueError naming the choices."""
    spec = (spec or "local").strip()
    kind, _, address = spec.partition(":")
    if kind not in EXECUTORS or (kind == "local" and address):
        raise ValueError(f"--executor {spec!r}: use local, ray or ray:ADDRESS (e.g. ray:auto, ray:10.0.0.5:6379)")
    return kind, address or None


def make_executor(spec: str | None = None, workers: int | None = None) -> Executor:
    """The executor for ``--executor`` / ``--workers`` (default: every core this process may use)."""
    kind, address = parse_executor(spec)
    if kind == "ray":
        return RayExecutor(address)
    n = available_cores() if workers is None else workers
    if n < 1:
        raise ValueError(f"--workers {n}: must be at least 1")
    return SerialExecutor() if n == 1 else ProcessExecutor(n)
