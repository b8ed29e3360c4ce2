"""Training curves from mmengine's logged scalars.

The scalars are those that mmengine's ``LocalVisBackend`` writes to
``<work_dir>/<timestamp>/vis_data/scalars.json``, one JSON object per logged
step; :func:`read_scalars` reads them into one :class:`Series` per key and
:func:`plot_scalars` draws them with matplotlib.
"""
from __future__ import annotations

import glob
import json
import math
import os
import os.path as osp
from dataclasses import dataclass
from typing import Sequence


@dataclass
class Series:
    """One logged scalar over training.

    Args:
        steps: The ``step`` of each value: the iteration for training
            scalars; for validation metrics the epoch (epoch-based loops) or
            the iteration (iteration-based loops).
        values: The logged values.
        unit: 'iteration' or 'epoch': what ``steps`` counts.
    """
    steps: list[int]
    values: list[float]
    unit: str = 'iteration'


def find_scalar_files(path: str) -> list[str]:
    """The scalars files of a work dir, oldest run first.

    ``path`` may be a scalars file itself (any ``.json`` in mmengine's
    one-object-per-line format), a run directory (``<work_dir>/<timestamp>``
    or its ``vis_data``), or a work dir holding several runs (e.g. a
    training and its resumption), which are all returned in time order.

    Raises:
        FileNotFoundError: If ``path`` does not exist or holds no scalars.
    """
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'no such file or directory: {path}')
    patterns = ('scalars.json', 'vis_data/scalars.json',
                '*/vis_data/scalars.json')
    for pattern in patterns:
        found = glob.glob(osp.join(path, pattern))
        if found:
            # run directories are named by their start time, so the sort
            # by name is chronological
            return sorted(found)
    raise FileNotFoundError(
        f'no vis_data/scalars.json under {path}: is it the work_dir of an '
        "mmengine run with LocalVisBackend (mmdet's and mmseg's default)?")


def read_scalars(path: str) -> dict[str, Series]:
    """Every numeric scalar logged in a work dir, one series per key.

    Training lines carry ``iter`` (and ``epoch`` in epoch-based loops) and
    their ``step`` is the iteration; validation lines carry neither, and
    their ``step`` is the epoch in epoch-based loops. A key logged in both
    (``time``, ``data_time``) keeps its name for training and becomes
    ``val/<key>`` for validation. Lines of later runs (a resumed training)
    replace those of earlier runs at the same step. The bookkeeping keys
    ``step``, ``epoch`` and ``iter`` are no series of their own.

    Args:
        path: See :func:`find_scalar_files`.

    Raises:
        ValueError: If a line is not a JSON object (naming file and line).
    """
    # phase -> key -> step -> value (dicts keep the order of appearance)
    tables: dict[str, dict[str, dict[int, float]]] = {'train': {}, 'val': {}}
    epoch_based = False
    for file in find_scalar_files(path):
        with open(file, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f'{file}:{number} is not a JSON object: {err}'
                    ) from err
                if not isinstance(record, dict) or 'step' not in record:
                    continue
                step = int(record['step'])
                phase = 'train' if 'iter' in record else 'val'
                epoch_based |= phase == 'train' and 'epoch' in record
                for key, value in record.items():
                    if key in ('step', 'epoch', 'iter') or isinstance(
                            value, bool) or not isinstance(
                                value, (int, float)):
                        continue
                    tables[phase].setdefault(key, {})[step] = float(value)
    series = {}
    val_unit = 'epoch' if epoch_based else 'iteration'
    for phase, unit in (('train', 'iteration'), ('val', val_unit)):
        for key, values in tables[phase].items():
            if phase == 'val' and key in tables['train']:
                key = f'val/{key}'
            steps = sorted(values)
            series[key] = Series(steps, [values[s] for s in steps], unit)
    return series


def plot_scalars(series: dict[str, Series],
                 keys: Sequence[str],
                 out_file: str,
                 title: str | None = None) -> str:
    """Plot the given series, one panel per key, into an image file.

    Uses matplotlib's Agg backend: no display needed.

    Args:
        series: As :func:`read_scalars` returns.
        keys: Which series to plot, in panel order.
        out_file: Image path (PNG, or any format matplotlib infers from
            the extension).
        title: Figure title. Defaults to None.

    Returns:
        ``out_file``.

    Raises:
        KeyError: If a key was not logged; the message lists those that
            were.
    """
    missing = [key for key in keys if key not in series]
    if missing:
        raise KeyError(
            f'not in the log: {missing}; logged keys: {sorted(series)}')
    if not keys:
        raise ValueError('no keys to plot')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = min(len(keys), 3)
    rows = math.ceil(len(keys) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 3.5 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        data = series[key]
        marker = 'o' if len(data.steps) <= 30 else None
        ax.plot(data.steps, data.values, marker=marker, linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel(data.unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if key == 'lr' or key.endswith('/lr'):
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_dir = osp.dirname(out_file)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
