"""Timing for the benchmarks: settings per device, the clock, the one loop
that times contenders in alternation (:func:`interleaved_rounds`, used by
every benchmark of this package), and one table row of throughput.

Contenders are timed in alternation (the order rotates every round), after
warm-up rounds, and the median of the timed rounds is reported, so a load
change on a shared machine hits every contender alike.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def parse_size(text: str) -> tuple[int, int, int]:
    """'2x800x1216' -> (batch, height, width)."""
    try:
        batch, height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'sizes are BATCHxHEIGHTxWIDTH, e.g. 32x224x224; got {text!r}')
    return batch, height, width


def fmt_size(size: tuple[int, int, int]) -> str:
    return f'{size[0]}x{size[1]}x{size[2]}'


@dataclass
class DeviceSettings:
    """What to measure on one device."""
    device: torch.device
    sizes: list[tuple[int, int, int]]
    amp_sizes: list[tuple[int, int, int]]
    dtypes: list[str]  # in the order they are measured
    compiled_sizes: list[tuple[int, int, int]]
    mem_size: tuple[int, int, int]
    det_size: tuple[int, int, int]
    det_rois: int | None  # RoIs sampled per image and stage; None: config's
    warmup: int
    repeats: int
    inner: int  # calls per timing, so a GPU timing spans milliseconds


def device_settings(args: argparse.Namespace,
                    device: torch.device) -> DeviceSettings:
    """Full sizes are those of the task; --quick sizes finish in minutes on 2
    CPU cores. bf16 autocast on a CPU without native bf16 instructions runs
    about 10x slower than fp32 (measured: 8.1 s vs 0.7 s for a 2x224x224
    forward on the test machine's EPYC), so --quick times it on a
    smaller input."""
    cuda = device.type == 'cuda'
    if args.quick:
        sizes = [(2, 224, 224), (1, 320, 480)]
        amp_sizes = [(1, 128, 128)]
        # the memory step runs once per variant, so it keeps the detection
        # size: at 2x320x320 the weight gradients (112 MB) and one block's
        # recomputation are a large part of the with_cp peak (measured 553
        # vs 398 MiB, -28%)
        mem_size, det_size = (2, 800, 1216), (2, 320, 320)
        # the cascade's RoI heads (4 convs per box head and 4 per mask head,
        # on 512 RoIs per image in each of 3 stages) dominate a CPU
        # iteration: measured with the 'test' arch on 2x64x64, 1 thread,
        # about 100 s with 512 RoIs and 20 s with 64, 80% of it in
        # convolutions. Fewer RoIs let the backbone's share show.
        det_rois = 32
    else:
        sizes = [(32, 224, 224), (2, 800, 1216)]
        amp_sizes = sizes
        mem_size = (2, 800, 1216)
        # mmdet's test scale is 1333x800; 320x320 keeps a CPU run in minutes
        det_size = (2, 800, 1333) if cuda else (2, 320, 320)
        det_rois = None
    sizes = args.sizes or sizes
    return DeviceSettings(
        device=device,
        sizes=sizes,
        amp_sizes=args.amp_sizes or args.sizes or amp_sizes,
        dtypes=args.dtypes or (['fp32', 'fp16', 'bf16'] if cuda
                               else ['fp32', 'bf16']),
        compiled_sizes=args.compiled_sizes or [
            size for size in sizes if size[1:] == (224, 224)] or sizes[:1],
        mem_size=args.mem_size or mem_size,
        det_size=args.det_size or det_size,
        det_rois=args.det_rois or det_rois,
        warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
        repeats=args.repeats,
        inner=args.inner if args.inner is not None else (10 if cuda else 1))


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """The timer for a device, and its name for the page.

    On the CPU with one torch thread, the process's CPU time: the seconds
    one core spends, which other jobs on a shared machine do not stretch
    (measured here under a load average of 2-6 on 2 cores: wall-clock
    timings of one step spread by up to 150%, CPU times by about 15%).
    Otherwise the wall clock, after synchronising the GPU.
    """
    if device.type == 'cpu' and torch.get_num_threads() == 1:
        return time.process_time, 'process CPU time (1 torch thread)'
    return time.perf_counter, 'wall clock'


def wall_clock_per_call(inner: int = 1,
                        timer: Callable[[], float] = time.perf_counter,
                        device: torch.device | None = None
                        ) -> Callable[[Callable[[], object]], float]:
    """A ``measure`` for :func:`interleaved_rounds`: seconds per call of a
    step called ``inner`` times on ``timer`` (synchronising a GPU)."""
    def measure(step: Callable[[], object]) -> float:
        if device is not None:
            synchronize(device)
        start = timer()
        for _ in range(inner):
            step()
        if device is not None:
            synchronize(device)
        return (timer() - start) / inner
    return measure


def interleaved_rounds(
        steps: dict[str, Callable[[], object]], rounds: int,
        warmup: int = 1,
        measure: Callable[[Callable[[], object]], float] | None = None,
        log: Callable[[int, str, float], None] | None = None
) -> dict[str, list[float]]:
    """The timing loop of every benchmark: warm-up rounds, then timed rounds.

    Every round measures each contender once, in an order that rotates
    from round to round, so no contender always follows the same other one
    and a load change on a shared machine hits every contender alike.

    Args:
        steps: Contender name -> the step to time.
        rounds: Timed rounds.
        warmup: Untimed rounds first. Defaults to 1.
        measure: Seconds of one step for one round; defaults to the wall
            clock of one call (:func:`wall_clock_per_call`). A step timed
            elsewhere (a worker process) is measured by what it returns.
        log: Called with (timed round, name, seconds) after each timing.

    Returns:
        Contender name -> its seconds in each timed round.
    """
    measure = measure or wall_clock_per_call()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = measure(steps[name])
            if round_ >= warmup:
                times[name].append(seconds)
                if log is not None:
                    log(round_ - warmup, name, seconds)
    return times


def interleaved_times(steps: dict[str, Callable[[], None]],
                      settings: DeviceSettings) -> dict[str, list[float]]:
    """Seconds per call of each step, in the rounds of ``settings`` on its
    device's :func:`clock`."""
    timer, _ = clock(settings.device)
    return interleaved_rounds(
        steps, settings.repeats, settings.warmup,
        wall_clock_per_call(settings.inner, timer, settings.device))


def spread(values: list[float]) -> float:
    """(max - min) / median: how much the timed rounds disagree."""
    return (max(values) - min(values)) / statistics.median(values)


@dataclass
class ThroughputRow:
    device: str
    size: tuple[int, int, int]
    dtype: str
    layout: str
    pass_: str
    images_per_s: dict[str, float]
    spread: float
    # per other contender, the lowest and highest ratio of one round: the
    # contenders of a round run back to back, so a round's ratio is free of
    # the machine's slower drifts, and the range is the ratio's noise
    round_ratios: dict[str, tuple[float, float]]

    def ratio(self, other: str) -> float | None:
        if other not in self.images_per_s:
            return None
        return self.images_per_s['ours'] / self.images_per_s[other]


def round_ratio_range(times: dict[str, list[float]], other: str,
                      ours: str = 'ours') -> tuple[float, float]:
    """(lowest, highest) over the timed rounds of ours/other in images/s."""
    ratios = [t_other / t_ours
              for t_ours, t_other in zip(times[ours], times[other])]
    return min(ratios), max(ratios)


def timed_row(steps: dict[str, Callable[[], None]],
              settings: DeviceSettings, size: tuple[int, int, int],
              dtype: str, layout: str, pass_: str,
              log: Callable[[str], None], label: str = '') -> ThroughputRow:
    """Time the contenders of one table row in alternation, log and return
    the row (the first contender is the one the ratios divide)."""
    times = interleaved_times(steps, settings)
    first = next(iter(times))
    row = ThroughputRow(
        device=settings.device.type, size=size, dtype=dtype, layout=layout,
        pass_=pass_,
        images_per_s={name: size[0] / statistics.median(t)
                      for name, t in times.items()},
        spread=max(spread(t) for t in times.values()),
        round_ratios={name: round_ratio_range(times, name, first)
                      for name in times if name != first})
    log(f'{row.device} {fmt_size(size)} {dtype} {layout} {pass_}{label}: '
        + ', '.join(f'{n} {v:.2f} img/s'
                    for n, v in row.images_per_s.items()))
    return row
