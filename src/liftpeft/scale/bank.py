"""The per-task state of one rank's shard: ``(n_rows, dim)`` float32 per field, in memory or on disk.

A sampler keeps, per task, its adapter (and, with pSGLD, its RMSprop average): ``N d`` floats, 400 GB
for 10^5 tasks at d = 10^6. ``TaskBank(path=...)`` keeps each field in a ``.npy`` file (readable with
``numpy.load(path, mmap_mode="r")``) and pages in only the rows a step visits, with positioned reads
and writes (``os.pread`` / ``os.pwrite``) rather than a memory map, so that resident memory stays
independent of the number of tasks (a map's touched pages count as resident). The files start sparse:
an unwritten row reads as zeros, which the sampler takes as "at the prior centre".

Crash safety. Rows written by a step stay in memory (``dirty``) until ``commit``: between two
checkpoints the files hold exactly the state of the last checkpoint. A checkpoint first saves
``pending()`` (the dirty rows) with the rest of the state, atomically, and only then ``apply``-s them to
the files; replaying a saved ``pending()`` is idempotent, so a process killed anywhere resumes from
its last saved checkpoint. Memory held: the rows visited since the last checkpoint, so checkpoint
at least every ``max_dirty / tasks_per_step`` steps (``dirty_rows`` reports it).
An in-memory bank (``path=None``) writes through; its ``pending()`` is every row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

_ITEM = 4  # float32


class BankError(ValueError):
    """A bank file is missing or has another shape than the run expects."""


class TaskBank:
    def __init__(
        self,
        n_rows: int,
        dim: int,
        fields: tuple[str, ...] = ("theta",),
        path: str | os.PathLike | None = None,
    ) -> None:
        if n_rows < 0 or dim < 1:
            raise ValueError(f"a bank needs n_rows >= 0 and dim >= 1, got {n_rows}, {dim}")
        self.n_rows, self.dim, self.fields = int(n_rows), int(dim), tuple(fields)
        self.path = Path(path) if path is not None else None
        self._dirty: dict[str, dict[int, torch.Tensor]] = {f: {} for f in self.fields}
        self._memory: dict[str, torch.Tensor] = {}
        self._fd: dict[str, int] = {}
        self._offset: dict[str, int] = {}
        if self.path is None:
            self._memory = {f: torch.zeros(self.n_rows, self.dim) for f in self.fields}
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            for f in self.fields:
                self._open(f)

    # -- files ---------------------------------------------------------------------------------------
    def file_of(self, field: str) -> Path:
        assert self.path is not None
        return self.path / f"{field}.npy"

    def _open(self, field: str) -> None:
        file = self.file_of(field)
        shape = (self.n_rows, self.dim)
        if not file.exists():
            tmp = file.with_name(file.name + ".tmp")
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()  # sparse
            os.replace(tmp, file)
        with file.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            found, fortran, dtype = reader(handle)
            offset = handle.tell()
        if tuple(found) != shape or fortran or dtype != np.float32:
            raise BankError(
                f"{file} holds a {dtype} array of shape {tuple(found)}, this run needs float32 {shape}; "
                "resume with the same tasks and world size, or start in a new output directory"
            )
        self._fd[field] = os.open(file, os.O_RDWR)
        self._offset[field] = offset

    def close(self) -> None:
        for fd in self._fd.values():
            os.close(fd)
        self._fd.clear()

    def __del__(self) -> None:  # the descriptors only; dirty rows are the caller's to commit
        try:
            self.close()
        except Exception:
            pass

    # -- rows ----------------------------------------------------------------------------------------
    def _check(self, field: str, row: int) -> None:
        if field not in self._dirty:
            raise KeyError(f"bank has fields {self.fields}, not {field!r}")
        if not 0 <= row < self.n_rows:
            raise IndexError(f"row {row} out of range [0, {self.n_rows})")

    def read(self, field: str, row: int) -> torch.Tensor:
        """Row ``row`` of ``field`` (dim,) float32, a copy."""
        self._check(field, row)
        if self.path is None:
            return self._memory[field][row].clone()
        cached = self._dirty[field].get(row)
        if cached is not None:
            return cached.clone()
        nbytes = self.dim * _ITEM
        data = os.pread(self._fd[field], nbytes, self._offset[field] + row * nbytes)
        if len(data) != nbytes:
            raise BankError(f"{self.file_of(field)} is truncated at row {row}; resume from a checkpoint")
        return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy())

    def write(self, field: str, row: int, values: torch.Tensor) -> None:
        self._check(field, row)
        values = values.detach().to(torch.float32).reshape(self.dim)
        if self.path is None:
            self._memory[field][row] = values
        else:
            self._dirty[field][row] = values.clone()

    @property
    def dirty_rows(self) -> int:
        return sum(len(rows) for rows in self._dirty.values())

    def rows(self, field: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``field`` (n, dim), dirty rows included (for occasional full scans)."""
        if self.path is None:
            return self._memory[field][start:stop].clone()
        if stop <= start:
            return torch.zeros(0, self.dim)
        return torch.stack([self.read(field, r) for r in range(start, stop)])

    # -- checkpoints ---------------------------------------------------------------------------------
    def pending(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must save: ``{field}.rows`` (n,) and ``{field}.values`` (n, dim) per field."""
        out: dict[str, torch.Tensor] = {}
        for f in self.fields:
            if self.path is None:
                rows, values = torch.arange(self.n_rows), self._memory[f].clone()
            else:
                ids = sorted(self._dirty[f])
                rows = torch.tensor(ids, dtype=torch.long)
                values = torch.stack([self._dirty[f][r] for r in ids]) if ids else torch.zeros(0, self.dim)
            out[f"{f}.rows"], out[f"{f}.values"] = rows, values
        return out

    def apply(self, saved: dict[str, torch.Tensor]) -> None:
        """Write rows saved by ``pending()`` into the bank (idempotent) and forget the dirty rows."""
        for f in self.fields:
            rows, values = saved[f"{f}.rows"].tolist(), saved[f"{f}.values"].to(torch.float32)
            if self.path is None:
                if rows:
                    self._memory[f][torch.tensor(rows)] = values
                continue
            nbytes = self.dim * _ITEM
            for r, v in zip(rows, values):
                os.pwrite(self._fd[f], v.contiguous().numpy().tobytes(), self._offset[f] + int(r) * nbytes)
            os.fsync(self._fd[f])
            self._dirty[f].clear()

    def commit(self) -> None:
        """Write the dirty rows to the files (after the checkpoint holding them was saved)."""
        if self.path is not None:
            self.apply(self.pending())
