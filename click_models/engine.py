"""Execution engines for the data-parallel passes: map a function over Parquet parts, in this process or on Ray.

The passes that scale with the log (simulating parts, counting impressions and clicks, converting raw
partitions) are maps over independent items followed by a reduce in the caller. An engine runs the map:

* :class:`LocalEngine` (``local``, the default): in this process, item after item;
* :class:`RayEngine` (``ray``, the ``ray`` extra): one Ray task per item on a local Ray instance or an existing
  cluster (``address``), each task retried when its worker dies or raises an ``OSError``.

Results come back in the order of the items whatever engine or worker count ran them, so a reduce over them is
the same computation everywhere. ultr grows no scheduler of its own: Ray schedules, retries and moves the data.

>>> engine = make_engine("local")
>>> engine.map(lambda item, offset: item + offset, [1, 2, 3], shared={"offset": 10})
[11, 12, 13]
"""

from __future__ import annotations

import abc
import os
import warnings
from typing import Any, Callable, Sequence

from .registry import Registry

#: what a Ray task retries: a lost worker process always (Ray's ``max_retries``), and these exceptions
RETRIED_EXCEPTIONS = (OSError,)


class Engine(abc.ABC):
    """Runs ``fn(item, **shared)`` for every item and returns the results in item order."""

    name: str = ""

    @abc.abstractmethod
    def map(self, fn: Callable[..., Any], items: Sequence, *, shared: dict | None = None,
            progress: Callable[[Any], None] | None = None) -> list:
        """``[fn(item, **shared) for item in items]``; ``shared`` holds large read-only arguments, sent once;
        ``progress`` is called with each result as it arrives (in completion order)."""

    def describe(self) -> dict:
        """What a run's metadata records of the engine."""
        return {"engine": self.name}

    def close(self) -> None:
        """Release what the engine started (a local Ray instance)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


ENGINES: Registry[type[Engine]] = Registry("engine")


@ENGINES.register("local")
class LocalEngine(Engine):
    """In this process, one item after another (the default: nothing to install, nothing to start)."""

    name = "local"

    def map(self, fn, items, *, shared=None, progress=None):
        results = []
        for item in items:
            result = fn(item, **(shared or {}))
            if progress is not None:
                progress(result)
            results.append(result)
        return results


class RayUnavailableError(RuntimeError):
    """``--engine ray`` without Ray installed, or a cluster that cannot be reached."""


@ENGINES.register("ray")
class RayEngine(Engine):
    """One Ray task per item (Moritz et al., OSDI 2018), on a local instance or the cluster at ``address``.

    Args:
      address: a Ray cluster address (``ray://host:10001``, ``auto``); None starts a local instance.
      workers: tasks that run at once (default: every CPU Ray has); each task asks for ``CPUs / workers``.
      max_retries: retries of a task whose worker died or that raised an ``OSError``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise RayUnavailableError("--engine ray needs Ray: pip install -e '.[ray]'") from None
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be positive, got {workers}")
        self._ray, self.address, self.max_retries = ray, address, max_retries
        self._started = False
        if address is not None and not ray.is_initialized():
            _check_reachable(address)
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                with warnings.catch_warnings():  # Ray starts its daemons by fork+exec, which JAX warns about
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
                    if address is None:
                        ray.init(num_cpus=workers or os.cpu_count(), **options)
                    else:
                        ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise RayUnavailableError(f"--ray-address {address}: cannot connect to Ray ({error})") from None
            self._started = True
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = workers or max(1, int(cpus))
        self.cpus_per_task = max(cpus / self.workers, 0.01) if workers else 1.0

    def map(self, fn, items, *, shared=None, progress=None):
        ray = self._ray
        remote = ray.remote(fn).options(num_cpus=self.cpus_per_task, max_retries=self.max_retries,
                                        retry_exceptions=list(RETRIED_EXCEPTIONS))
        refs = {name: ray.put(value) for name, value in (shared or {}).items()}
        pending = [remote.remote(item, **refs) for item in items]
        order = {ref: index for index, ref in enumerate(pending)}
        results: list = [None] * len(pending)
        waiting = list(pending)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    result = ray.get(ref)
                    results[order[ref]] = result
                    if progress is not None:
                        progress(result)
        except BaseException as error:
            for ref in waiting:
                ray.cancel(ref, force=True)
            cause = getattr(error, "cause", None)
            if isinstance(error, ray.exceptions.RayTaskError) and isinstance(cause, Exception):
                raise cause from None  # the task's own error (a bad input: one line), not Ray's wrapped traceback
            raise
        return results

    def describe(self):
        return {"engine": self.name, "workers": self.workers, "address": self.address}

    def close(self):
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def distributes(engine: "Engine | None") -> bool:
    """Whether ``engine`` runs tasks outside this process (None and ``local``: the caller's own loop)."""
    return engine is not None and not isinstance(engine, LocalEngine)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a HOST:PORT cluster address that does not answer (Ray itself would retry for minutes)."""
    import socket

    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        raise RayUnavailableError(f"--ray-address {address}: no Ray cluster answers there ({error})") from None


def make_engine(name: str | Engine | None = "local", *, address: str | None = None,
                workers: int | None = None) -> Engine:
    """An engine from its registered name (an :class:`Engine` is returned as it is)."""
    if isinstance(name, Engine):
        return name
    cls = ENGINES.lookup(name or "local", "engine")
    if cls is LocalEngine:
        if address is not None:
            raise ValueError("--ray-address: only the ray engine connects to a cluster (give --engine ray)")
        return LocalEngine()
    return cls(address=address, workers=workers)
