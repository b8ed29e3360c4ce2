"""Timing Cascade Mask R-CNN T on convnext_dense.ops against compiled mmcv.

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
