"""Where read tasks run: a local thread pool, or a Dask distributed cluster.

Both are driven as a ``concurrent.futures.Executor`` (Dask through
``Client.get_executor``), so the fetch loop is the same and so are the
results. Tasks are pure functions of picklable arguments that return bytes;
Dask workers need geosample installed, not access to ``DS``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor

from geosample.errors import ConfigError

__all__ = ["open_executor"]


@contextlib.contextmanager
def open_executor(scheduler: str | None, workers: int) -> Iterator[tuple[Executor, int]]:
    """An executor and the number of tasks to keep in flight on it.

    Args:
        scheduler: None for threads; ``local`` for a new LocalCluster (processes, so
            decoding runs on every core); or the address of a running scheduler.
        workers: Threads (or, for ``local``, total worker threads).
    """
    if scheduler is None:
        with ThreadPoolExecutor(workers, thread_name_prefix="geosample-fetch") as pool:
            yield pool, 2 * workers
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
        executor = client.get_executor(pure=False)
        yield executor, 2 * threads
