"""Atomic file output: a temporary file in the destination's folder, then `os.replace`, so a reader never sees a
half-written file and an interrupted write leaves the previous one (if any) as it was.

    write_atomic("out/train.jsonl", text)      # str (written as UTF-8) or bytes
    copy_atomic("a.png", "report/a.png")

Both create the destination's folder and give the file the mode a plain `open` would (0666 less the umask).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PathLike = str | os.PathLike[str]


def write_atomic(path: PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8, line ends as given) to `path`, flushed to disk before the rename. Returns `path`."""
    path = Path(path)
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    return path


def copy_atomic(source: PathLike, path: PathLike) -> Path:
    """Copy the file `source` to `path`; nothing is copied when both name the same file. Returns `path`."""
    source, path = Path(source), Path(path)
    if path.exists() and os.path.samefile(source, path):
        return path
    with _replacing(path) as tmp:
        shutil.copyfile(source, tmp)
    return path


@contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """An empty temporary file next to `path` for the block to fill: renamed onto `path` (umask's mode) when the
    block ends normally, removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is too strict for a file others read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
