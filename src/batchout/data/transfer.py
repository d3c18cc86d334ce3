"""Raw files into ``data.raw_dir``, atomically: copied from the read-only mirror or extracted from
one of its archives (both checked against the mirror's ``SHA256SUMS`` first), or moved from a
download's staging folder.

Usage: ``copy_folder(mirror, "mnist/MNIST/raw", raw_dir / "MNIST/raw")``; ``extract(archive, "cifar10", dest)``
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

from batchout.data import formats
from batchout.errors import BatchoutError
from batchout.io import atomic_dir


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # progress for long copies; stdout keeps the summary


def usual_mode(folder: Path) -> None:
    """Give a temporary folder the mode a plain ``mkdir`` would (temp folders start private, 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


def copy_files(src: Path, dest: Path) -> None:
    """Copy the files under ``src`` into ``dest`` with fresh permissions (a read-only mirror's
    modes would make the copy undeletable)."""
    usual_mode(dest)
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def copy_folder(mirror: Path, rel: str, dest: Path) -> None:
    formats.verify_under(mirror, rel)  # before anything is written
    _say(f"copying {mirror / rel} -> {dest}")
    with atomic_dir(dest) as tmp:
        copy_files(mirror / rel, tmp)


def extract(archive: Path, folder: str, dest: Path) -> None:
    """Extract ``archive`` and keep its top folder ``folder`` as ``dest``."""
    formats.verify_under(archive.parent, archive.name)
    _say(f"extracting {archive} -> {dest}")
    try:
        with atomic_dir(dest) as tmp:
            usual_mode(tmp)
            staging = tmp / ".extract"
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")  # "data" refuses absolute paths and links out
            inner = staging / folder
            if not inner.is_dir():
                raise BatchoutError(f"{archive}: has no top folder {folder!r}; expected {folder}/...")
            for child in inner.iterdir():
                os.replace(child, tmp / child.name)
            shutil.rmtree(staging)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise BatchoutError(f"{archive}: cannot extract ({type(err).__name__}: {err})") from None
