"""The guard every writing stage runs under: one writer per dataset, clean restarts after kill -9, clear I/O errors."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from untrusted import assert_refused, ignore_sigxfsz, kill_9_at, run_cli, run_process, tree, unprivileged

from geosample._dataset import (
    LOCK_FILE,
    STALE,
    dataset_lock,
    lock_holder,
    lock_message,
    remove_stale,
    write_atomic,
)

EXAMPLES = Path(__file__).parents[1] / "data" / "examples"
OFFLINE = ["--stac", EXAMPLES / "offline-stac" / "catalog.json", "--collection", "landsat7-demo"]
PLAN = ["-n", "3", "--aoi", "bbox:5,45,10,50", "--seed", "1", "--no-progress"]
STAGING_PREFIXES = (".plan-", ".label-", ".webdataset-", ".stac-", ".eval-", ".labels-old-")


def staging_left(ds: Path) -> list[str]:
    """Every staging name of any stage still in ``DS``: what a killed run leaves behind."""
    names = []
    for path in ds.rglob(".*"):
        name = path.name
        if name.startswith(STAGING_PREFIXES) or name.endswith(".tmp"):
            names.append(str(path.relative_to(ds)))
    return sorted(names)


STAGES = [
    ["fetch", "{ds}", *OFFLINE],
    ["label", "{ds}"],
    ["caption", "{ds}"],
    ["export", "{ds}", "-f", "parquet"],
    ["evaluate", "{ds}"],
]


@pytest.mark.parametrize("stage", STAGES, ids=[s[0] for s in STAGES])
def test_one_writer_at_a_time(tiny_ds: Path, capsys: pytest.CaptureFixture[str], stage: list[str]) -> None:
    before = tree(tiny_ds)
    with dataset_lock(tiny_ds, "label"):  # as another process's run would hold it
        code, _, err = run_cli([str(a).format(ds=tiny_ds) for a in stage], capsys)
    assert_refused(code, err, f"another geosample command (geosample label, PID {os.getpid()}, running since ",
                   f") is writing {tiny_ds}; wait for it to finish or stop it (kill {os.getpid()})")  # fmt: skip
    assert tree(tiny_ds) == before  # the holder's record went with the lock


HOLDER = (
    "import sys, time\n"
    "from geosample._dataset import writing\n"
    "with writing(sys.argv[1], 'fetch'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)
"""A ``geosample fetch`` stand-in: holds the lock on DS, as fetch does, until it is killed."""


def test_the_lock_names_its_holder_and_a_killed_holder_blocks_nobody(
    tiny_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tiny_ds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        record = json.loads((tiny_ds / LOCK_FILE).read_text())
        assert record["pid"] == holder.pid and record["command"] == "fetch"
        code, _, err = run_cli(["caption", tiny_ds, "--no-progress"], capsys)
        assert_refused(code, err, f"(geosample fetch, PID {holder.pid}, running since {record['started']})",
                       f"(kill {holder.pid})")  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    assert json.loads((tiny_ds / LOCK_FILE).read_text())["pid"] == holder.pid  # the killed run's record stays ...
    folder = os.open(tiny_ds, os.O_RDONLY)  # ... and is not believed while a holder that left no record has the lock
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run_cli(["caption", tiny_ds, "--no-progress"], capsys)
        assert_refused(code, err, "(plan, fetch, label, caption, evaluate or export)")
        assert str(holder.pid) not in err
    finally:
        os.close(folder)
    code, _, err = run_cli(["caption", tiny_ds, "--no-progress", "-q"], capsys)  # a dead holder blocks nobody
    assert code == 0, err
    assert not (tiny_ds / LOCK_FILE).exists()


def test_a_record_of_a_reused_pid_is_not_believed(tmp_path: Path) -> None:
    """The PID of a killed holder may belong to another process later: its start time tells them apart."""
    record = tmp_path / LOCK_FILE
    with dataset_lock(tmp_path, "export"):
        mine = json.loads(record.read_text())
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        for changed in ({"pid_start": "1"}, {"pid": 2**22 + 7}, {"command": "rm -rf /"}, {"host": 5}):
            record.write_text(json.dumps({**mine, **changed}))
            assert lock_holder(tmp_path) is None, changed
        record.write_text("{not json")
        assert lock_holder(tmp_path) is None
        assert lock_message(tmp_path).startswith("another geosample command (plan, fetch, label")


PARTIAL_PARQUET = (
    "import os, signal, pyarrow.parquet as pq\n"
    "def torn(table, where, *a, **k):\n"
    "    open(where, 'wb').write(b'PAR1 torn')\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "pq.write_table = torn\n"
)
"""A kill -9 in the middle of writing a Parquet file (the first one the run writes)."""
KILLS = [
    ("plan", ["plan", "-o", "{ds}", "--overwrite", *PLAN], kill_9_at("geosample._gpkg", "write_styled_gpkg"),
     ".plan-"),
    ("label", ["label", "{ds}", "--no-progress"], kill_9_at("geosample.labels.exports", "_replace_dir"), ".label-"),
    ("export", ["export", "{ds}", "-f", "webdataset"], kill_9_at("geosample.export._export", "_swap_in"),
     "export/.webdataset-"),
    ("fetch", ["fetch", "{ds}", *OFFLINE, "--no-progress"], PARTIAL_PARQUET, ".chips.parquet."),
    ("caption", ["caption", "{ds}", "--no-progress"], PARTIAL_PARQUET, ".captions.parquet."),
]  # fmt: skip


@pytest.mark.parametrize(("command", "code", "left"), [k[1:] for k in KILLS], ids=[k[0] for k in KILLS])
def test_kill_9_then_a_rerun_leaves_no_staging_file(
    tiny_ds: Path, capsys: pytest.CaptureFixture[str], command: list[str], code: str, left: str
) -> None:
    args = [str(a).format(ds=tiny_ds) for a in command]
    killed = run_process(args, code=code)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert any(name.startswith(left) for name in staging_left(tiny_ds)), staging_left(tiny_ds)
    status, _, err = run_cli(args, capsys)
    assert status == 0, err
    assert staging_left(tiny_ds) == []


def _plant_all(ds: Path) -> dict[str, Path]:
    """One stale staging name per pattern of every stage, as killed runs leave them."""
    planted = {}
    for stage, patterns in STALE.items():
        for pattern in patterns:
            name = pattern.replace("**/", "sub/").replace("*", "abc").replace("????????", "k2j4_x9q")
            path = ds / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if "tmp" in name:
                path.write_text("torn")
            else:
                path.mkdir()
                (path / "half.bin").write_text("torn")
            planted[f"{stage}:{pattern}"] = path
    return planted


def test_a_stage_removes_only_its_own_staging_files(tiny_ds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planted = _plant_all(tiny_ds)
    (tiny_ds / "export" / ".hidden-by-the-user").write_text("mine")  # not a staging name: kept
    code, _, err = run_cli(["label", tiny_ds, "--no-progress", "-q"], capsys)
    assert code == 0, err
    for key, path in planted.items():
        assert path.exists() == (not key.startswith("label:")), key
    assert (tiny_ds / "export" / ".hidden-by-the-user").exists()
    code, _, err = run_cli(["evaluate", tiny_ds], capsys)  # fails (no captions), after its own clean-up
    assert code == 2 and "no captions.parquet" in err
    for key, path in planted.items():
        assert path.exists() == (key.split(":")[0] not in ("label", "evaluate")), key
    assert remove_stale(tiny_ds, STALE["caption"]) == 3


def test_disk_full_during_plan_leaves_nothing(tmp_path: Path) -> None:
    """A 40 kB file-size limit makes a write fail as a full disk would (EFBIG instead of ENOSPC)."""

    def small_disk() -> None:
        ignore_sigxfsz()
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    ds = tmp_path / "DS"
    done = run_process(["plan", "-o", ds, *PLAN], preexec=small_disk)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"geosample: error: no space left to write plan "
                                                                   f"output in {ds}")  # fmt: skip
    assert "free some disk space" in done.stderr and ".plan-" not in done.stderr
    assert not ds.exists()  # the folder this run made is gone again (a plan over an older one keeps that one)


def test_permission_errors_name_the_dataset_and_the_fix(tiny_ds: Path) -> None:
    (tiny_ds / "geosample.yaml").chmod(0o444)
    tiny_ds.chmod(0o555)
    try:
        before = tree(tiny_ds)
        done = run_process(["label", tiny_ds, "--no-progress"], preexec=unprivileged())
    finally:
        tiny_ds.chmod(0o755)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("geosample: warning:")]
    assert lines == [
        f"geosample: error: no permission to write in {tiny_ds} (Permission denied); make the folder writable for "
        f"you (e.g. chmod -R u+w {tiny_ds}) or use another folder"
    ]
    assert tree(tiny_ds) == before
    locked = tiny_ds.parent / "shared"
    locked.mkdir(mode=0o555)
    done = run_process(["export", tiny_ds, "-f", "parquet", "-o", locked / "out"], preexec=unprivileged())
    locked.chmod(0o755)
    assert done.returncode == 2 and done.stderr.startswith(f"geosample: error: no permission to write in {locked} ")
    assert ".parquet-" not in done.stderr and list(locked.iterdir()) == []


def test_write_atomic_replaces_whole_files_with_plain_permissions(tmp_path: Path) -> None:
    chips = tmp_path / "DS" / "chips"
    target = chips / "s1.tif"
    write_atomic(target, b"first")  # the folder is made on the way
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    umask = os.umask(0)
    os.umask(umask)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask
    # A write that fails leaves the old file and no temporary file.
    with pytest.raises(TypeError):
        write_atomic(target, None)  # type: ignore[arg-type]
    assert target.read_bytes() == b"second" and sorted(p.name for p in chips.iterdir()) == ["s1.tif"]
    # A killed run's temporary file is one fetch's guard removes.
    (chips / f".s1.tif.{'ab12cd34'}.tmp").write_bytes(b"half")
    assert remove_stale(tmp_path / "DS", STALE["fetch"]) == 1
    assert sorted(p.name for p in chips.iterdir()) == ["s1.tif"]
