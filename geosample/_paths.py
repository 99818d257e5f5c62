"""Paths built from untrusted names stay inside the folder they are meant for.

Sample ids, collection ids, STAC item ids and export member names come from
files other people made (a shared plan, a catalogue, a manifest). Every path
geosample builds from one is checked here: the name must be one plain path
component (:func:`check_name`), and the joined path, resolved (``..`` and
symbolic links followed), must lie inside its root (:func:`inside`). A
symbolic link inside a dataset folder that leads out of it is refused too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from geosample.errors import UnsafeInputError

__all__ = [
    "MAX_NAME_LENGTH", "NAME_RULE", "check_name", "folder_paths", "folder_test", "in_folder", "inside", "is_inside",
    "name_problem",
]  # fmt: skip

MAX_NAME_LENGTH = 128
"""Longest id or name used as a file or folder name (file systems allow 255 bytes; suffixes are added)."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
NAME_RULE = f"1 to {MAX_NAME_LENGTH} characters from A-Z a-z 0-9 . _ - +, starting with a letter or digit"
"""The allowed form of a sample id (and of any name that becomes a file name), in words."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file or folder name, or None when it can (see :data:`NAME_RULE`)."""
    if not isinstance(name, str):
        return f"is {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if NAME_PATTERN.fullmatch(name):
        return None
    if "/" in name or "\\" in name:
        return "contains a path separator"
    bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "._+-"))), None)
    if bad is not None:
        return f"contains {bad!r}" if bad.isprintable() else f"contains the character U+{ord(bad):04X}"
    return f"starts with {name[0]!r}"


def check_name(name: object, what: str) -> str:
    """``name`` if it can be a file or folder name, else an :class:`UnsafeInputError` naming ``what``."""
    problem = name_problem(name)
    if problem is not None:
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:57] + "...")
        raise UnsafeInputError(f"{what} {shown} {problem}; names that become files must be {NAME_RULE}")
    return str(name)


def is_inside(root: str | Path, path: str | Path) -> bool:
    """Whether ``path`` (absolute, or relative to ``root``), resolved, is ``root`` or lies under it."""
    try:
        return _under(os.path.realpath(root), os.path.realpath(Path(root) / path))
    except (ValueError, OSError):  # an embedded NUL, a loop of links
        return False


def _under(root: str, target: str) -> bool:
    """Whether the resolved path ``target`` is the resolved folder ``root`` or lies under it."""
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def in_folder(ds: str | Path, relative: object, folder: str) -> bool:
    """Whether ``relative`` (a path from a manifest, relative to ``DS``) names something inside ``DS/folder``."""
    return folder_test(ds, folder)(relative)


def folder_test(ds: str | Path, folder: str) -> Callable[[object], bool]:
    """:func:`in_folder` for many paths of one manifest: ``DS`` and ``DS/folder`` are resolved once, each path once.

    Make one per use (a pass over a manifest): it keeps what ``DS/folder`` resolved to when it was made.
    """
    try:
        base = os.path.realpath(ds)
        root = os.path.realpath(Path(ds) / folder)
    except (ValueError, OSError):  # an embedded NUL, a loop of links
        return lambda relative: False
    usable = _under(base, root)  # a linked DS/folder that leads out of DS puts nothing inside it
    # Resolving a path walks every component (an lstat each); a manifest's files share a few folders,
    # so each folder is resolved once and a file is then one lstat: resolved folder + name, unless the
    # name is itself a link (then resolved in full).
    folders: dict[str, str] = {}

    def test(relative: object) -> bool:
        if not usable or not isinstance(relative, str) or not relative or os.path.isabs(relative):
            return False
        if "\0" in relative:
            return False
        head, name = os.path.split(os.path.join(ds, relative))
        try:
            if name in ("", ".", ".."):
                target = os.path.realpath(os.path.join(head, name))
            else:
                folder = folders.get(head)
                if folder is None:
                    folder = folders[head] = os.path.realpath(head)
                target = os.path.join(folder, name)
                if os.path.islink(target):
                    target = os.path.realpath(target)
        except (ValueError, OSError):
            return False
        return _under(root, target)

    return test


def folder_paths(ds: str | Path, folder: str, what: str = "path") -> Callable[[str], Path]:
    """:func:`inside` for the many files one pass writes under ``DS/folder``: a path relative to ``DS`` → the path.

    Each folder is resolved once (see :func:`folder_test`), so a file costs one ``lstat``; make one per pass.

    Raises:
        UnsafeInputError: The path does not lie inside ``DS/folder`` once resolved.
    """
    test = folder_test(ds, folder)
    base = Path(ds)

    def path(relative: str) -> Path:
        if not test(relative):
            raise _outside(what, relative, base / folder)
        return base / relative

    return path


def inside(root: str | Path, *parts: str, what: str = "path") -> Path:
    """``root`` joined with ``parts``, refused unless it resolves inside ``root``.

    Raises:
        UnsafeInputError: The path leaves ``root`` (``..``, an absolute part, a
            symbolic link leading out); the message names ``what`` and the path.
    """
    root = Path(root)
    path = root.joinpath(*(str(p) for p in parts))
    if not is_inside(root, path):
        raise _outside(what, "/".join(str(p) for p in parts), root)
    return path


def _outside(what: str, shown: str, root: Path) -> UnsafeInputError:
    """The error for a path built from untrusted names that would leave ``root``."""
    return UnsafeInputError(
        f"{what} {shown!r} would lie outside {root}; geosample writes and reads only inside the dataset "
        "folder (the file naming it is damaged or hostile: re-create it)"
    )
