"""Percentiles, summaries of latency samples, and medians over rounds or trials."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
Method = Literal["linear", "nearest"]


def percentile(sorted_values: Sequence[float], q: float, method: Method = "linear") -> float:
    """``q`` in [0, 1] of values sorted ascending. ``linear`` interpolates between the two
    nearest ranks; ``nearest`` takes the value at index round(q * (n - 1)) (the Celery
    baseline's generator does that)."""
    n = len(sorted_values)
    if not n:
        return float("nan")
    k = q * (n - 1)
    if method == "nearest":
        return sorted_values[min(n - 1, max(0, round(k)))]
    lo = int(k)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    def short(self) -> str:
        return f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms"

    def long(self) -> str:
        return (
            f"p50 {self.p50:.2f} ms  p90 {self.p90:.2f}  p99 {self.p99:.2f}  "
            f"mean {self.mean:.2f}  (n={self.n})"
        )


def summary(values: Iterable[float], method: Method = "linear") -> Summary:
    s = sorted(values)
    return Summary(
        n=len(s),
        p50=percentile(s, 0.50, method),
        p90=percentile(s, 0.90, method),
        p99=percentile(s, 0.99, method),
        mean=statistics.fmean(s) if s else float("nan"),
        max=s[-1] if s else float("nan"),
    )


@dataclass(frozen=True)
class Spread:
    """The median of several rounds and their range."""

    median: float
    lo: float
    hi: float

    def show(self, fmt: str, with_range: bool = True) -> str:
        text = f"{self.median:{fmt}}"
        return f"{text} ({self.lo:{fmt}}-{self.hi:{fmt}})" if with_range else text


def spread(values: Iterable[float]) -> Spread:
    v = list(values)
    return Spread(statistics.median(v), min(v), max(v))


def by_row(rows: Iterable[tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, Spread]]:
    """Median and range of each figure per row name over rounds, rows in first-seen order; a
    figure missing from a round counts as 0 there."""
    grouped: dict[str, list[Mapping[str, float]]] = {}
    for name, figures in rows:
        grouped.setdefault(name, []).append(figures)
    return {
        name: {
            k: spread(r.get(k, 0.0) for r in rounds)
            for k in dict.fromkeys(k for r in rounds for k in r)
        }
        for name, rounds in grouped.items()
    }


def median_item(items: Iterable[T], key: Callable[[T], float], best: bool = False) -> T:
    """The item with the (lower) median ``key``, or the highest with ``best``: a real trial,
    not an average of two."""
    ranked = sorted(items, key=key)
    return ranked[-1] if best else ranked[(len(ranked) - 1) // 2]
