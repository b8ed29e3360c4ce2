"""The one timing loop of the benchmarks: rotation, warm-up, measures."""
from __future__ import annotations

import itertools

from convnext_dense.analysis.timing import (interleaved_rounds,
                                            wall_clock_per_call)


def test_rounds_rotate_and_warmup_is_dropped() -> None:
    order = []
    steps = {name: (lambda name=name: order.append(name)) for name in 'abc'}
    ticks = itertools.count()
    logged = []
    times = interleaved_rounds(
        steps, rounds=2, warmup=1, measure=lambda step: (step(),
                                                          next(ticks))[1],
        log=lambda index, name, seconds: logged.append((index, name,
                                                        seconds)))
    # round 0 (warm-up) a b c, round 1 b c a, round 2 c a b
    assert order == list('abcbcacab')
    assert times == {'a': [5, 7], 'b': [3, 8], 'c': [4, 6]}
    assert logged == [(0, 'b', 3), (0, 'c', 4), (0, 'a', 5),
                      (1, 'c', 6), (1, 'a', 7), (1, 'b', 8)]


def test_wall_clock_per_call_divides_by_the_calls() -> None:
    clock = iter([10.0, 16.0])
    calls = []
    measure = wall_clock_per_call(inner=3, timer=lambda: next(clock))
    assert measure(lambda: calls.append(1)) == 2.0
    assert len(calls) == 3


def test_default_measure_is_one_call() -> None:
    calls = []
    times = interleaved_rounds({'x': lambda: calls.append(1)}, rounds=3,
                               warmup=0)
    assert len(calls) == 3 and len(times['x']) == 3
    assert all(t >= 0 for t in times['x'])
