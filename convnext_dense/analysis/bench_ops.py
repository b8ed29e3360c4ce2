"""Timing convnext_dense.ops: Cascade Mask R-CNN T against compiled mmcv,
and multi-scale deformable attention against mmcv's pure-PyTorch function.

One worker process per contender, each holding its own detector; the parent
asks them in turn, round after round, to time training iterations and
inference, so that the contenders alternate and share the machine's drifts.
A ratio is computed per round (the compiled build's time over the other's:
above 1 means faster than compiled mmcv) and reported with its range.

The rounds are those of
:func:`~convnext_dense.analysis.timing.interleaved_rounds`. Contenders
(``tools/analysis/bench_ops.py`` names the interpreters):

- ``default``: this environment (torch 2.14 + mmcv-lite + convnext_dense.ops);
- ``compiled``: an environment made by ``tools/install.sh --mmcv-ops``
  (torch 2.12 + mmcv 2.1.0 with its compiled ops);
- ``ops on compiled's torch``: that same environment with its compiled
  ``mmcv._ext`` replaced by convnext_dense.ops, which separates the ops'
  cost from the torch versions'.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from convnext_dense.paths import CONFIG_DIR, REPO_ROOT

from .timing import interleaved_rounds

REPO = REPO_ROOT
CONFIG = os.path.join(CONFIG_DIR, 'cascade_convnext_t.py')
TARGET = 0.95  # the default path is at least this fast as compiled mmcv


@dataclass
class Contender:
    name: str
    python: str
    force_ops: bool = False  # replace a compiled mmcv._ext by ours


def worker(force_ops: bool, batch: int, size: int, rois: int) -> None:
    """A worker's main loop: build, then answer 'train N' / 'infer N' lines
    on stdin with a JSON line of per-iteration seconds on stdout."""
    import torch
    if force_ops:
        from convnext_dense.ops.mmcv_ext import build_extension
        assert 'mmcv.ops' not in sys.modules
        sys.modules['mmcv._ext'] = build_extension()
    import convnext_dense  # noqa: F401
    from convnext_dense.ops import mmcv_ops_source
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = rois  # RoIs per image and stage (512 in the paper)
    init_default_scope('mmdet')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    # lr 0: every iteration does the same work on the same weights
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=0.))
    data = demo_mm_inputs(batch_size=batch,
                          image_shapes=[(3, size, size)] * batch,
                          num_items=[8] * batch, num_classes=80,
                          with_mask=True)
    ext = sys.modules['mmcv._ext']
    print(json.dumps(dict(ready=True, torch=torch.__version__,
                          ops=mmcv_ops_source(),
                          ext=type(ext).__module__)), flush=True)
    for line in sys.stdin:
        part, count = line.split()
        times = []
        for _ in range(int(count)):
            torch.manual_seed(1)
            start = time.perf_counter()
            if part == 'train':
                model.train()
                model.train_step(data, wrapper)
            else:
                model.eval()
                with torch.no_grad():
                    model.test_step(data)
            times.append(time.perf_counter() - start)
        print(json.dumps(dict(times=times)), flush=True)


class _Worker:
    def __init__(self, contender: Contender, batch: int, size: int,
                 rois: int) -> None:
        code = ('import sys; sys.path.insert(0, {repo!r}); '
                'from convnext_dense.analysis.bench_ops import worker; '
                'worker({force}, {batch}, {size}, {rois})').format(
                    repo=REPO, force=contender.force_ops, batch=batch,
                    size=size, rois=rois)
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
        self.proc = subprocess.Popen(
            [contender.python, '-c', code], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f'benchmark worker ended (exit '
                                   f'{self.proc.wait()})')
            if line.startswith('{'):
                return json.loads(line)

    def run(self, part: str, count: int) -> list[float]:
        self.proc.stdin.write(f'{part} {count}\n')
        self.proc.stdin.flush()
        return self._read()['times']

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(contenders: list[Contender], rounds: int = 3, iters: int = 2,
        batch: int = 2, size: int = 320, rois: int = 64,
        log: Callable[[str], None] = print) -> dict:
    """Time every contender; the first is compared with 'compiled'.

    Returns:
        ``workers`` (what each runs on) and ``parts``: for 'train' and
        'infer', each contender's per-round median seconds.
    """
    workers = {}
    for contender in contenders:
        log(f'starting {contender.name} ({contender.python})')
        workers[contender.name] = _Worker(contender, batch, size, rois)
    parts: dict[str, dict[str, list[float]]] = {}
    try:
        for part in ('train', 'infer'):
            # a step asks a worker for its median of `iters` iterations,
            # which the worker times itself (no pipe in the timing)
            steps = {name: functools.partial(
                lambda w, p: statistics.median(w.run(p, iters)), w, part)
                for name, w in workers.items()}
            parts[part] = interleaved_rounds(
                steps, rounds, warmup=1, measure=lambda step: step(),
                log=lambda index, name, seconds, part=part: log(
                    f'{part} round {index + 1} {name}: {seconds:.3f} s'))
    finally:
        for worker_ in workers.values():
            worker_.close()
    return dict(workers={name: w.info for name, w in workers.items()},
                parts=parts, settings=dict(rounds=rounds, iters=iters,
                                           batch=batch, size=size, rois=rois))


def render(result: dict, command: str) -> str:
    """The markdown page of a :func:`run`."""
    settings = result['settings']
    lines = [
        '# convnext_dense.ops against compiled mmcv',
        '',
        f'Command: `{command}`  ',
        f'Machine: {platform.machine()}, {os.cpu_count()} cores, 1 thread '
        'per worker; ' + time.strftime('%Y-%m-%d'),
        '',
        f'Cascade Mask R-CNN ConvNeXt-T (configs/cascade_convnext_t.py, '
        f'random weights), batch {settings["batch"]} of '
        f'{settings["size"]}x{settings["size"]} mmdet demo images with 8 '
        f'boxes and masks each, {settings["rois"]} RoIs per image and stage '
        '(512 in the paper); a training iteration is `train_step` (lr 0), '
        'inference `test_step`. Each cell is the median over rounds of the '
        f'per-round median of {settings["iters"]} iterations, '
        f'{settings["rounds"]} rounds, contenders alternating. Ratio: '
        "compiled's time / the contender's, per round (range in brackets); "
        f'target >= {TARGET}.',
        '',
        '| contender | torch | mmcv ops | train s/iter | train ratio '
        '| infer s/img batch | infer ratio |',
        '|---|---|---|---|---|---|---|',
    ]
    parts = result['parts']
    verdicts = []
    for name, info in result['workers'].items():
        cells = []
        for part in ('train', 'infer'):
            mine = parts[part][name]
            cells.append(f'{statistics.median(mine):.2f}')
            if name == 'compiled' or 'compiled' not in parts[part]:
                cells.append('-')
                continue
            ratios = [c / m for c, m in zip(parts[part]['compiled'], mine)]
            cells.append(f'{statistics.median(ratios):.2f}x '
                         f'({min(ratios):.2f}-{max(ratios):.2f})')
            verdicts.append((name, part, statistics.median(ratios)))
        lines.append(f'| {name} | {info["torch"]} | {info["ops"]} | '
                     + ' | '.join(cells) + ' |')
    lines.append('')
    for name, part, ratio in verdicts:
        lines.append(f'- {name}, {part}: {ratio:.2f}x compiled mmcv\'s '
                     f'speed: target {">=" if ratio >= TARGET else "<"} '
                     f'{TARGET} {"met" if ratio >= TARGET else "NOT met"}')
    return '\n'.join(lines) + '\n'


def benchmark_ops(compiled_python: str | None = None, rounds: int = 3,
                  iters: int = 2, size: int = 320, rois: int = 64,
                  out: str = os.path.join(REPO_ROOT, 'docs',
                                          'benchmarks_ops.md'),
                  command: str = '') -> str:
    """Time this environment (and, given ``compiled_python``, an mmcv
    compiled with its ops, and that one on convnext_dense.ops) and write
    the page to ``out``; what ``tools/analysis/bench_ops.py`` does.

    Returns:
        ``out``.
    """
    contenders = [Contender('default', sys.executable)]
    if compiled_python:
        contenders += [
            Contender('compiled', compiled_python),
            Contender("ops on compiled's torch", compiled_python,
                      force_ops=True)]
    result = run(contenders, rounds, iters, size=size, rois=rois)
    with open(out, 'w') as file:
        file.write(render(result, command))
    return out


# Multi-scale deformable attention: the op (through mmcv's autograd
# function, as mmcv's module calls it on a GPU) against mmcv's pure-PyTorch
# function (what mmcv's module runs on the CPU), forward + backward

MSDA_CONTENDERS = ('convnext_dense.ops', 'mmcv pytorch')
# DINO/Deformable DETR's attention: 256 dims in 8 heads, 4 levels of
# strides 8-64 of a 320x320 image, 4 points; the encoder's queries are its
# keys, the decoder has 900 queries
MSDA_CASES = {'encoder': 2125, 'decoder': 900}
MSDA_SHAPES = ((40, 40), (20, 20), (10, 10), (5, 5))


def msda_inputs(queries: int, batch: int = 2, heads: int = 8,
                channels: int = 32, points: int = 4) -> tuple:
    """value, shapes, level starts, locations, weights, output gradient."""
    import torch
    generator = torch.Generator().manual_seed(0)
    shapes = torch.tensor(MSDA_SHAPES)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    keys, levels = int(shapes.prod(1).sum()), len(MSDA_SHAPES)
    value = torch.randn(batch, keys, heads, channels, generator=generator)
    loc = torch.rand(batch, queries, heads, levels, points, 2,
                     generator=generator)
    weight = torch.rand(batch, queries, heads, levels, points,
                        generator=generator).softmax(-1)
    grad = torch.randn(batch, queries, heads * channels, generator=generator)
    return value, shapes, starts, loc, weight, grad


def msda_step(contender: str, inputs: tuple) -> Callable[[], None]:
    """One forward + backward of ``contender`` on ``inputs``."""
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
    value, shapes, starts, loc, weight, grad = inputs
    leaves = [t.clone().requires_grad_() for t in (value, loc, weight)]

    def forward():
        for leaf in leaves:
            leaf.grad = None
        if contender == MSDA_CONTENDERS[0]:
            return MultiScaleDeformableAttnFunction.apply(
                leaves[0], shapes, starts, leaves[1], leaves[2], 64)
        return multi_scale_deformable_attn_pytorch(leaves[0], shapes,
                                                   leaves[1], leaves[2])

    def step() -> None:
        forward().backward(grad)
    step.forward, step.inputs = forward, leaves + [shapes, starts]
    return step


def msda_saved_bytes(step: Callable[[], None]) -> int:
    """Bytes that a step's forward keeps for its backward beyond the step's
    inputs (the tensors it saves, counted once per storage)."""
    import torch
    inputs = {t.untyped_storage().data_ptr() for t in step.inputs}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step.forward()
    return sum(storages.values())


def msda_memory_child(contender: str, queries: int) -> dict:
    """Peak resident memory of one step above the resident size before it,
    in this fresh process (as :func:`~.memory.memory_child`)."""
    import torch

    import convnext_dense  # noqa: F401  (installs the ops)
    from .memory import _status_bytes
    torch.set_num_threads(1)
    step = msda_step(contender, msda_inputs(queries))
    with open('/proc/self/clear_refs', 'w') as file:
        file.write('5')  # VmHWM := VmRSS
    before = _status_bytes('VmRSS')
    step()
    return dict(peak_bytes=_status_bytes('VmHWM') - before)


def benchmark_msda(rounds: int = 5, log: Callable[[str], None] = print
                   ) -> dict:
    """Time and measure every contender of every case (one torch thread,
    process CPU time, contenders alternating); peak memory in a fresh
    process per contender and case."""
    import torch

    import convnext_dense  # noqa: F401  (installs the ops)
    from .timing import clock, wall_clock_per_call
    torch.set_num_threads(1)
    timer, timer_name = clock(torch.device('cpu'))
    result = dict(rounds=rounds, timer=timer_name, cases={})
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    for case, queries in MSDA_CASES.items():
        inputs = msda_inputs(queries)
        steps = {name: msda_step(name, inputs) for name in MSDA_CONTENDERS}
        times = interleaved_rounds(
            steps, rounds, warmup=1, measure=wall_clock_per_call(
                timer=timer),
            log=lambda index, name, seconds, case=case: log(
                f'msda {case} round {index + 1} {name}: {seconds:.3f} s'))
        rows = {}
        for name in MSDA_CONTENDERS:
            code = ('import json; from convnext_dense.analysis.bench_ops '
                    'import msda_memory_child; print(json.dumps('
                    f'msda_memory_child({name!r}, {queries})))')
            child = subprocess.run([sys.executable, '-c', code], env=env,
                                   check=True, capture_output=True,
                                   text=True).stdout.strip().splitlines()
            rows[name] = dict(
                seconds=statistics.median(times[name]),
                spread=(min(times[name]), max(times[name])),
                saved_bytes=msda_saved_bytes(steps[name]),
                peak_bytes=json.loads(child[-1])['peak_bytes'])
            log(f'msda {case} {name}: {rows[name]}')
        result['cases'][case] = dict(queries=queries, rows=rows)
    return result


def render_msda(result: dict, command: str) -> str:
    """The markdown table of a :func:`benchmark_msda`."""
    lines = [
        f'Command: `{command}`; {result["rounds"]} rounds, contenders '
        f'alternating, {result["timer"]}; ' + time.strftime('%Y-%m-%d'),
        '',
        '| case | contender | fwd+bwd s (range) | held for backward MiB '
        '| peak MiB |',
        '|---|---|---|---|---|']
    for case, entry in result['cases'].items():
        for name, row in entry['rows'].items():
            low, high = row['spread']
            lines.append(
                f'| {case} ({entry["queries"]} queries) | {name} | '
                f'{row["seconds"]:.3f} ({low:.3f}-{high:.3f}) | '
                f'{row["saved_bytes"] / 2**20:.1f} | '
                f'{row["peak_bytes"] / 2**20:.1f} |')
    return '\n'.join(lines) + '\n'
