"""Per-worker throughput and the job's total, printed at the end of a Ray job."""

from __future__ import annotations

import time

last_summary = None  # the last job's Summary in this process (benchmarks/distributed.py reads it)


class Summary:
    def __init__(self, unit: str):
        self.unit = unit
        self.start = time.perf_counter()
        self.total = 0.0
        self.workers: dict = {}

    def add(self, result: dict) -> None:
        w = self.workers.setdefault(f"{result['host']}:{result['pid']}", [0, 0, 0.0, 0.0])
        w[0] += 1
        w[1] += result["frames"]
        w[2] += result["seconds"]
        w[3] += result["cpu_seconds"]

    @property
    def cpu_seconds(self) -> float:
        return sum(w[3] for w in self.workers.values())

    def print(self, done: int) -> None:
        global last_summary
        last_summary = self
        self.total = time.perf_counter() - self.start
        print(f"{'worker':<28} {'tasks':>5} {self.unit:>7} {'busy s':>8} {'cpu s':>8} {self.unit + '/s':>9}")
        for name, (tasks, frames, busy, cpu) in sorted(self.workers.items()):
            print(f"{name:<28} {tasks:>5} {frames:>7} {busy:>8.2f} {cpu:>8.2f} {frames / max(busy, 1e-9):>9.2f}")
        print(
            f"total: {done} {self.unit} in {self.total:.2f} s ({done / max(self.total, 1e-9):.2f} {self.unit}/s) "
            f"on {len(self.workers)} worker(s)"
        )
