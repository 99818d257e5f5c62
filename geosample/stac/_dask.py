"""Where read tasks run: a local thread pool, or a Dask distributed cluster.

Both are driven as a ``concurrent.futures.Executor`` (Dask through
``Client.get_executor``), so the fetch loop is the same and so are the
results. Tasks are pure functions of picklable arguments that return bytes;
Dask workers need geosample installed, not access to ``DS``.

Both keep the tasks of one source item together (:func:`~geosample.stac._work.task_key`):
the thread pool sends them to the thread that ran the item's first task (whose
open sources hold its decoded tiles), the cluster to the worker that did
(``workers=``, ``allow_other_workers=True``). A task goes elsewhere only when
its item's thread is busier than the least busy thread (by more than
:data:`SLACK` tasks), so one item with many chips still spreads over idle
workers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from geosample.errors import ConfigError

__all__ = ["AffinityPool", "open_executor"]

Key = Callable[[Sequence[Any]], Hashable | None]
SLACK = 1
"""Tasks a thread may have beyond the least busy one and still receive the tasks of its items."""


class AffinityPool(Executor):
    """``workers`` threads, each with its own queue; tasks with the same key go to the same thread.

    A task's thread is the one its key was first sent to, unless that thread has more than
    :data:`SLACK` tasks queued or running beyond the least busy one: then the least busy (tasks
    without a key always go there).

    Args:
        workers: Threads.
        key: The key of a task, from its positional arguments (None: no preference).
        name: Thread name prefix.
    """

    def __init__(self, workers: int, key: Key, name: str = "geosample-fetch") -> None:
        self._threads = [ThreadPoolExecutor(1, thread_name_prefix=f"{name}-{i}") for i in range(max(1, workers))]
        self._load = [0] * len(self._threads)
        self._home: dict[Hashable, int] = {}
        self._key = key
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # noqa: D102
        key = self._key(args)
        with self._lock:
            least = min(range(len(self._load)), key=self._load.__getitem__)
            home = self._home.setdefault(key, least) if key is not None else least
            chosen = home if self._load[home] <= self._load[least] + SLACK else least
            self._load[chosen] += 1
        future = self._threads[chosen].submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._done(chosen))
        return future

    def _done(self, index: int) -> None:
        with self._lock:
            self._load[index] -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: D102
        for pool in self._threads:
            pool.shutdown(wait=False, cancel_futures=cancel_futures)
        if wait:
            for pool in self._threads:
                pool.shutdown(wait=True)


class _DaskAffinity(Executor):
    """A Dask client's executor that prefers, for each key, the worker its first task went to."""

    def __init__(self, client: Any, key: Key) -> None:
        self._executor = client.get_executor(pure=False)
        self._workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        self._home: dict[Hashable, str] = {}
        self._next = 0
        self._key = key

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # noqa: D102
        key = self._key(args)
        if key is None or not self._workers:
            return self._executor.submit(fn, *args, **kwargs)
        home = self._home.get(key)
        if home is None:
            home = self._home[key] = self._workers[self._next % len(self._workers)]
            self._next += 1
        return self._executor.submit(fn, *args, workers=[home], allow_other_workers=True, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: D102
        self._executor.shutdown(wait=wait)


def _default_key(args: Sequence[Any]) -> Hashable | None:
    from geosample.stac._work import task_key

    return task_key(args)


@contextlib.contextmanager
def open_executor(scheduler: str | None, workers: int, key: Key = _default_key) -> Iterator[tuple[Executor, int]]:
    """An executor and the number of tasks to keep in flight on it.

    Args:
        scheduler: None for threads; ``local`` for a new LocalCluster (processes, so
            decoding runs on every core); or the address of a running scheduler.
        workers: Threads (or, for ``local``, total worker threads).
        key: What tasks that belong together share (default: a read task's source item).
    """
    if scheduler is None:
        pool = AffinityPool(workers, key)
        try:
            yield pool, 2 * workers
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask-scheduler needs dask.distributed: pip install 'geosample[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            n = max(1, min(workers, os.cpu_count() or 1))
            threads = max(1, -(-workers // n))
            cluster = stack.enter_context(
                LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, dashboard_address=None)
            )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot connect to the Dask scheduler at {scheduler} ({exc.__class__.__name__}); "
                    "check the address and that the scheduler is running"
                ) from None
        threads = sum(client.nthreads().values()) or workers
        yield _DaskAffinity(client, key), 2 * threads
