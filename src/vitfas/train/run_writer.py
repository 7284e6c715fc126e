"""The run's logs: ``train_log.csv``, ``eval_log.csv`` and TensorBoard events in ``tb/``."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RunWriter"]


class RunWriter:
    """CSV + TensorBoard logs of one run; a no-op on non-main ranks.

    ``train_log.csv`` gets one row per logged step, ``eval_log.csv`` one per evaluation;
    new columns are added by rewriting the file. TensorBoard events go to ``tb/``.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir, self.enabled, self.tensorboard = Path(run_dir), enabled, tensorboard
        self._tb: Any = None

    def _tb_writer(self, purge_step: int | None = None) -> Any:
        if self._tb is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed; TensorBoard logs are off")
                self.tensorboard = False
                return None
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        return self._tb

    def start(self, resume_step: int | None) -> None:
        """Open the logs; on resume, drop rows logged after ``resume_step``."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for name in ("train_log.csv", "eval_log.csv"):
                rows = self._read(name)
                keep = [r for r in rows if int(float(r.get("step", 0))) <= resume_step]
                if len(keep) != len(rows):
                    self._write(name, keep)
        self._tb_writer(purge_step=resume_step + 1 if resume_step is not None else None)

    def _read(self, name: str) -> list[dict[str, str]]:
        p = self.run_dir / name
        if not p.is_file():
            return []
        with open(p, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        with open(self.run_dir / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)

    def log(self, name: str, step: int, values: Mapping[str, Any], prefix: str) -> None:
        """Append a row to ``name`` (``train_log.csv`` / ``eval_log.csv``) and TensorBoard."""
        if not self.enabled:
            return
        row = {"step": step, **values}
        p = self.run_dir / name
        header: list[str] = []
        if p.is_file():
            with open(p, newline="") as f:
                header = next(csv.reader(f), [])
        if p.is_file() and all(k in header for k in row):
            with open(p, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=header).writerow(row)
        else:
            self._write(name, [*self._read(name), row])
        tb = self._tb_writer()
        if tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "time"):
                    tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
