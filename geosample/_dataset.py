"""The dataset folder: atomic writes, geosample.yaml's sections, the checked plan and samples, and the writing guard.

Every stage that writes ``DS`` runs under :func:`writing`: one writer at a
time (an advisory lock), its own stale staging files from killed runs
removed, and permission or disk-full errors named against ``DS`` with the fix.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from geosample.errors import DatasetError, GeosampleError

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

CONFIG_FILE = "geosample.yaml"
PLAN_FILE = "plan.parquet"
CHIPS_FILE = "chips.parquet"
LABELS_FILE = "labels.parquet"
CAPTIONS_FILE = "captions.parquet"
RESERVE_FILE = "reserve.parquet"
"""The plan's reserve sites (``geosample plan --reserve``), which fetch substitutes for failed samples."""
SAMPLES_FILE = "samples.parquet"
"""The achieved sample set, written by fetch: the plan's rows that got their chips, and the reserves that replaced
the others (:func:`read_samples`)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it that replaces it only once fully written.

    :func:`atomic_path` for bytes already in hand, with half its file-system work: the temporary file
    (named as :func:`atomic_path` names it, so a killed run's is removed the same way) is created once,
    with the permissions of any new file (``0o666`` less the umask), written, and renamed over ``path``.
    Fetch writes each chip and its STAC item this way.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        break
    else:  # pragma: no cover - 100 random names taken
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_config(ds: str | Path) -> dict[str, Any]:
    """All sections of ``DS/geosample.yaml`` (empty if there is none yet), read within the config file budgets."""
    from geosample._config_file import load_yaml

    path = Path(ds) / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = load_yaml(path, "dataset settings")
    except GeosampleError as exc:
        raise DatasetError(f"{exc}; or delete {path}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a mapping of stage sections; fix or delete it")
    return data


def write_section(ds: str | Path, stage: str, values: dict[str, Any]) -> None:
    """Set one stage's section of ``DS/geosample.yaml``, keeping the others."""
    data = read_config(ds)
    data[stage] = values
    with atomic_path(Path(ds) / CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def read_plan(ds: str | Path) -> gpd.GeoDataFrame:
    """``DS/plan.parquet``, checked by the plan validator, or a :class:`DatasetError` that says how to make it.

    Every stage reads its plan here, so no stage sees an unsafe id, a NaN
    coordinate or an impossible chip (see :mod:`geosample._plan_checks`).
    """
    import geopandas as gpd

    from geosample._plan_checks import check_plan

    ds = Path(ds)
    if not ds.is_dir():
        raise DatasetError(f"dataset folder {ds} does not exist; make it with 'geosample plan -o {ds}'")
    path = ds / PLAN_FILE
    if not path.exists():
        raise DatasetError(f"{ds} has no {PLAN_FILE}; run 'geosample plan -o {ds}' first")
    try:
        plan = gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run 'geosample plan'") from None
    return check_plan(plan, str(path))


def read_reserve(ds: str | Path) -> gpd.GeoDataFrame | None:
    """``DS/reserve.parquet`` checked like the plan (None when the plan has no reserves).

    Raises:
        DatasetError: The file cannot be read, or a reserve id is also a plan id (the file belongs to another plan).
    """
    import geopandas as gpd

    from geosample._plan_checks import check_plan

    path = Path(ds) / RESERVE_FILE
    if not path.exists():
        return None
    try:
        reserve = gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run 'geosample plan'") from None
    if "reserve_rank" not in reserve.columns:
        raise DatasetError(f"{path} has no column reserve_rank; re-run 'geosample plan' to draw the reserves again")
    clash = set(reserve["sample_id"].astype(str)) & _ids(Path(ds) / PLAN_FILE)
    if clash:
        raise DatasetError(
            f"{path} shares {len(clash)} sample id(s) with plan.parquet (e.g. {sorted(clash)[0]}): it belongs to "
            "another plan; re-run 'geosample plan' to draw the reserves again"
        )
    return check_plan(reserve, str(path))


def read_samples(ds: str | Path) -> gpd.GeoDataFrame:
    """The dataset's samples: ``DS/samples.parquet`` when fetch has written it, else the plan; checked like the plan.

    ``samples.parquet`` is the achieved sample set: the plan's rows whose chips arrived, and the reserve sites
    fetch substituted for the others (their ``replaces`` names the plan sample they stand in for). Stages that
    work on the dataset's samples (label, caption, evaluate, export, stats) read them here; code that needs the
    plan itself (fetch) reads :func:`read_plan`.

    Raises:
        DatasetError: There is no plan; or ``samples.parquet`` cannot be read, holds no sample, or names samples
            that neither the plan nor its reserves have (it was made for another plan).
    """
    import geopandas as gpd

    from geosample._plan_checks import check_plan

    ds = Path(ds)
    path = ds / SAMPLES_FILE
    if not path.exists():
        return read_plan(ds)
    if not (ds / PLAN_FILE).exists():
        raise DatasetError(f"{ds} has {SAMPLES_FILE} but no {PLAN_FILE}; run 'geosample plan -o {ds}' first")
    try:
        samples = gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run 'geosample fetch {ds}'") from None
    if len(samples) == 0:
        raise DatasetError(
            f"{path} holds no samples: no site of the plan got its chips (see 'achieved' in report/balance.json); "
            f"run 'geosample fetch {ds} --retry-failed', or fetch from another --stac"
        )
    strangers = set(samples["sample_id"].astype(str)) - _ids(ds / PLAN_FILE) - _ids(ds / RESERVE_FILE)
    if strangers:
        raise DatasetError(
            f"{path} names {len(strangers)} sample(s) that neither plan.parquet nor reserve.parquet has "
            f"(e.g. {sorted(strangers)[0]}): it was made for another plan; re-run 'geosample fetch {ds}'"
        )
    return check_plan(samples, str(path))


def _ids(path: Path) -> set[str]:
    """The ``sample_id`` values of a plan-like Parquet file (empty when there is none or it cannot be read)."""
    import pyarrow.parquet as pq

    if not path.exists():
        return set()
    try:
        return {str(v) for v in pq.read_table(path, columns=["sample_id"]).column(0).to_pylist()}
    except Exception:  # noqa: BLE001 - the reader of that file reports what is wrong with it
        return set()


def read_table(ds: str | Path, name: str, *, hint: str, columns: Iterable[str] | None = None) -> pd.DataFrame | None:
    """A stage's Parquet table in ``DS`` (plain pandas), or None if that stage has not run.

    ``hint`` names the command that writes it, for the error raised when the file is unreadable.
    ``columns`` reads only those of the file's columns (the ones it lacks are left out), not every one.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(ds) / name
    if not path.exists():
        return None
    try:
        with pq.ParquetFile(path) as file:
            if columns is not None:
                present = set(file.schema_arrow.names)
                columns = [c for c in columns if c in present]
            # Row group by row group: a column is one Arrow chunk per row group (pandas' reader cuts it in
            # batches of 131,072 rows), so later steps can use a column's buffers as they are, not join copies.
            table = file.read(columns=columns, use_pandas_metadata=True).to_pandas()
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run '{hint}'") from None
    finally:
        # Arrow's allocator (mimalloc) keeps the read's freed decoding buffers for reuse, about as much again
        # as the table itself; the stages read their tables once, so hand them back to the system.
        pa.default_memory_pool().release_unused()
    if name == CHIPS_FILE:  # stages read and send the files it names: only under DS/chips
        from geosample._plan_checks import check_chip_table

        check_chip_table(ds, table, str(path))
    return table


# ------------------------------------------------------------------------------------------ writing stages

LOCK_FILE = ".geosample.lock"
"""Who holds the dataset lock: the command, its PID, host and start, written by the holder (JSON)."""
LOCK_MESSAGE = "another geosample command ({holder}) is writing {ds}; wait for it to finish or stop it{stop}"
UNKNOWN_HOLDER = "plan, fetch, label, caption, evaluate or export"
"""Named in :data:`LOCK_MESSAGE` when the lock file does not say who holds the lock (or names a dead process)."""
COMMON_STALE = (f".{CONFIG_FILE}.*.tmp",)
"""Staging names any writing stage may leave (the ``geosample.yaml`` rewrite)."""
STALE = {
    "plan": (".plan-*", f".{PLAN_FILE}.*.tmp"),
    "fetch": (
        f".{CHIPS_FILE}.*.tmp",
        f".{SAMPLES_FILE}.*.tmp",
        "report/.balance.json.*.tmp",
        "chips/**/.*.tmp",
        "stac/**/.*.json.tmp",
    ),
    "label": (".label-*", f".{LABELS_FILE}.*.tmp", "stac/.labels-old-*"),
    "caption": (f".{CAPTIONS_FILE}.*.tmp", "report/.captions.json.*.tmp", ".cache/captions/**/.*.tmp"),
    "evaluate": (".eval-*",),
    "export": ("export/.*-????????", "export/.*-old-????????"),
}
"""Each stage's own staging names, relative to ``DS``: what a killed run of that stage leaves behind.

Every name starts with a dot, and no sample id may (:data:`geosample._paths.NAME_RULE`), so these
patterns never match a chip, a label item or an export a user asked for."""
_MKDTEMP_TAIL = re.compile(r"-(old-)?[a-z0-9_]{8}$")
_F = TypeVar("_F", bound=Callable[..., Any])


@contextlib.contextmanager
def dataset_lock(ds: str | Path, command: str = "") -> Iterator[None]:
    """Hold an advisory lock on the folder ``DS``, so two geosample commands never write one dataset at once.

    The lock is on the folder itself, and the OS drops it when the process dies, so a killed run never
    blocks the next one. While it holds the lock, the holder records who it is in ``DS/.geosample.lock``
    (:data:`LOCK_FILE`: the command, PID, host and start time) and removes that file when it lets go; a
    command refused the lock names the holder from it. A file left by a killed run is only a record: it
    is believed when its process is still alive (same PID, same start time), else the message says
    nothing of it. ``plan``, ``fetch``, ``label``, ``caption``, ``evaluate`` and ``export`` all take it.

    Args:
        ds: The dataset folder.
        command: The command that writes (``fetch``), named to those refused the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        yield
        return
    fd = os.open(ds, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(lock_message(ds)) from None
        record = Path(ds) / LOCK_FILE
        _write_holder(record, command)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # before the lock goes: the next holder's record is never removed
                record.unlink()
    finally:
        os.close(fd)


def lock_message(ds: str | Path) -> str:
    """The refusal while another process holds the lock on ``DS``, naming it when its record is believable."""
    holder = lock_holder(ds)
    if holder is None:
        return LOCK_MESSAGE.format(holder=UNKNOWN_HOLDER, ds=ds, stop="")
    pid = holder["pid"]
    where = f" on {holder['host']}" if holder["host"] != socket.gethostname() else ""
    since = f", running since {holder['started']}" if holder.get("started") else ""
    stop = f" (kill {pid})" if not where else f" (process {pid} on {holder['host']})"
    name = f"geosample {holder['command']}".strip()
    return LOCK_MESSAGE.format(holder=f"{name}, PID {pid}{where}{since}", ds=ds, stop=stop)


def lock_holder(ds: str | Path) -> dict[str, Any] | None:
    """The record in ``DS/.geosample.lock`` if it names a live process (or one on another host), else None.

    A missing, unreadable or malformed file, a PID that no longer runs, or a PID now used by another
    process (a different start time) all give None: a killed run's record is never believed.
    """
    import json

    try:
        with open(Path(ds) / LOCK_FILE, "rb") as fh:
            holder = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict):
        return None
    pid, command, host = holder.get("pid"), holder.get("command"), holder.get("host")
    if not (isinstance(pid, int) and pid > 0 and isinstance(command, str) and isinstance(host, str)):
        return None
    if not re.fullmatch(r"[a-z-]{0,32}", command) or len(host) > 255 or not host.isprintable():
        return None
    if host == socket.gethostname():
        if not _alive(pid) or holder.get("pid_start") != _process_start(pid):
            return None
    started = holder.get("started")
    return {**holder, "started": started if isinstance(started, str) and len(started) <= 40 else None}


def _write_holder(record: Path, command: str) -> None:
    """Record this process as the holder (best effort: a read-only ``DS`` fails later with its own message)."""
    import datetime
    import json

    pid = os.getpid()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    holder = {"command": command, "pid": pid, "pid_start": _process_start(pid),
              "host": socket.gethostname(), "started": started}  # fmt: skip
    with contextlib.suppress(OSError):
        record.write_text(json.dumps(holder) + "\n", encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): it runs
        return True
    return True


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``), to tell a reused PID; else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def remove_stale(folder: str | Path, patterns: Iterable[str]) -> int:
    """Remove what killed runs left under ``folder`` matching ``patterns`` (files or folders); returns how many."""
    folder = Path(folder)
    removed = 0
    for pattern in patterns:
        for path in folder.glob(pattern):
            if not path.name.startswith("."):
                continue
            if pattern.endswith("????????") and not _MKDTEMP_TAIL.search(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def writing(ds: str | Path, stage: str, *, create: bool = False) -> Iterator[Path]:
    """The guard of a stage that writes ``DS``: the dataset lock, its stale staging files removed, clear I/O errors.

    Args:
        ds: The dataset folder.
        stage: The stage (a key of :data:`STALE`); names the command in messages.
        create: Make ``DS`` if it does not exist (plan); a folder made here is removed again when the
            block fails, so a failed first run leaves nothing behind.

    Raises:
        DatasetError: Another command holds the lock; or writing failed for lack of permission or space
            (the message names ``DS``, not a temporary file, and the fix).
    """
    ds = Path(ds)
    made = None
    if create and not ds.exists():
        made = ds
        try:
            ds.mkdir(parents=True)
        except OSError as exc:
            raise io_error(ds, stage, exc) from None
    try:
        with dataset_lock(ds, stage):
            remove_stale(ds, (*STALE.get(stage, ()), *COMMON_STALE))
            yield ds
    except GeosampleError:
        _remove_made(made)
        raise
    except Exception as exc:
        # A full disk often surfaces as something else (a GeoPackage "no such table" after SQLite's write
        # failed): when the error is not plainly about DS, a small probe write tells whether space ran out.
        cause = exc if _attributable(ds, exc) else _space_probe(ds)
        _remove_made(made)
        if cause is None:
            raise
        raise io_error(ds, stage, cause) from None
    except BaseException:
        _remove_made(made)
        raise


PROBE_BYTES = 1 << 20
"""Size of the write that tells, after an unexplained failure, whether ``DS`` has run out of space."""


def _space_probe(ds: Path) -> OSError | None:
    """The error of writing :data:`PROBE_BYTES` into ``DS`` when it fails for lack of space, else None.

    The probe file has no name (``tempfile.TemporaryFile``), so nothing is left behind, even by a kill.
    """
    try:
        with tempfile.TemporaryFile(dir=ds) as fh:
            fh.write(bytes(PROBE_BYTES))
            fh.flush()
    except OSError as exc:
        return exc if io_failure_kind(exc) == "space" else None
    return None


def _remove_made(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def io_errors_in(folder: str | Path, stage: str) -> Iterator[None]:
    """Name ``folder`` (not a temporary path) and the fix when writing there fails for lack of permission or space.

    For outputs outside ``DS`` (``export -o``); inside it, :func:`writing` does this.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, GeosampleError) or io_failure_kind(exc) is None:
            raise
        raise io_error(Path(folder), stage, exc) from None


def writes_dataset(stage: str) -> Callable[[_F], _F]:
    """Decorate a stage function whose first argument is ``DS``: it runs under :func:`writing`.

    A folder that does not exist is left to the function (its own error says how to make it).
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(ds: str | Path, *args: Any, **kwargs: Any) -> Any:
            if not Path(ds).is_dir():
                return func(ds, *args, **kwargs)
            with writing(ds, stage):
                return func(ds, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_ACCESS_TEXT = ("permission denied", "read-only file system", "operation not permitted")
_NO_SPACE_TEXT = ("no space left", "disk quota exceeded", "file too large", "disk is full")


def io_failure_kind(exc: BaseException) -> str | None:
    """``"space"`` (disk full, quota, file size limit), ``"access"`` (permission, read-only) or None."""
    number = getattr(exc, "errno", None)
    text = str(exc).lower()
    if number in _NO_SPACE or any(t in text for t in _NO_SPACE_TEXT):
        return "space"
    if number in _NO_ACCESS or any(t in text for t in _NO_ACCESS_TEXT):
        return "access"
    return None


def _attributable(ds: Path, exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to write into ``DS`` (for lack of space or permission), not some other file's."""
    from geosample._paths import is_inside

    kind = io_failure_kind(exc)
    if kind is None:
        return False
    filename = getattr(exc, "filename", None)
    if filename:
        return is_inside(ds, str(filename))
    if kind == "space":  # the stages write nowhere else
        return True
    text = str(exc)
    return str(ds) in text or str(ds.resolve()) in text


def io_error(ds: Path, stage: str, exc: BaseException) -> DatasetError:
    """A one-line :class:`DatasetError` for a failed write into ``DS``: what happened, to which folder, the fix."""
    kind = io_failure_kind(exc)
    if kind == "space":
        return DatasetError(
            f"no space left to write {stage} output in {ds} ({_reason(exc)}); free some disk space "
            f"(or use a folder on another disk) and run 'geosample {stage}' again: nothing was half-written"
        )
    if kind == "access":
        return DatasetError(
            f"no permission to write in {ds} ({_reason(exc)}); make the folder writable for you "
            f"(e.g. chmod -R u+w {ds}) or use another folder"
        )
    return DatasetError(f"cannot write {stage} output in {ds} ({_reason(exc)})")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or " ".join(str(exc).split())
    return text[:160] or type(exc).__name__
