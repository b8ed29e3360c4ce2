"""Config paths and ``--cfg-options`` keys from the command line, checked.

mmengine merges ``--cfg-options model.test_cfg.rcnn.score_thres=0.5`` into
the config as a new key that nothing reads, so a typo runs silently with
the old value; and a mistyped config path gives a traceback from
``Config.fromfile``. Every tool goes through :func:`find_config` and
:func:`check_cfg_options`, which name the bad path or key in one line with
the nearest existing one.
"""
from __future__ import annotations

import difflib
import glob
import os.path as osp
from typing import Any, Mapping


class ConfigNotFoundError(FileNotFoundError):
    """A config path that names no config file (nor a work dir with one)."""


class UnknownConfigKeyError(ValueError):
    """A ``--cfg-options`` key the config does not have."""


def _nearest(word: str, candidates) -> str | None:
    found = difflib.get_close_matches(word, sorted(candidates), n=1,
                                      cutoff=0.6)
    return found[0] if found else None


def _suggest_path(path: str) -> str | None:
    """The existing config file nearest to ``path``: in its folder if that
    exists, else among the repository's configs."""
    from convnext_dense.paths import CONFIG_DIR
    folder = osp.dirname(path) or '.'
    if osp.isdir(folder):
        candidates = glob.glob(osp.join(folder, '*.py')) + [
            d for d in glob.glob(osp.join(folder, '*')) if osp.isdir(d)
        ]
        found = _nearest(osp.basename(path),
                         {osp.basename(c): c for c in candidates})
        if found:
            return osp.join(osp.dirname(path), found)
    configs = {osp.basename(c): c for c in glob.glob(
        osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
        if '_base_' not in c}
    found = _nearest(osp.basename(path), configs)
    return osp.relpath(configs[found]) if found else None


def find_config(path: str) -> str:
    """A config file, or the single config a Runner dumped into a work dir.

    Raises:
        ConfigNotFoundError: If there is no such file (naming the nearest
            existing config), or the directory holds no ``*.py`` config or
            several.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        near = _suggest_path(path)
        raise ConfigNotFoundError(
            f'config not found: {path}' +
            (f'; did you mean {near}?' if near else ''))
    found = sorted(glob.glob(osp.join(path, '*.py')))
    if len(found) != 1:
        raise ConfigNotFoundError(
            f'{path} is a directory; expected one config (*.py) in it, as a '
            f'Runner work dir has, found {len(found)}: {found}')
    return found[0]


def _missing_key(cfg: Mapping, key: str) -> str | None:
    """Why ``key`` (dotted, list indices as numbers, as mmengine's
    ``merge_from_dict`` reads it) is not in ``cfg``, or None if it is."""
    node: Any = cfg
    parts = key.split('.')
    for depth, part in enumerate(parts):
        where = '.'.join(parts[:depth]) or 'the config'
        if isinstance(node, (list, tuple)):
            if not (part.isdigit() and int(part) < len(node)):
                return (f'{where} is a list of {len(node)}: {part!r} is not '
                        'an index of it')
            node = node[int(part)]
        elif hasattr(node, 'keys'):  # dict, ConfigDict, Config
            if part == '_delete_':
                return None
            if part not in node:
                near = _nearest(part, [str(k) for k in node.keys()])
                prefix = '.'.join(parts[:depth])
                if near:
                    hint = 'did you mean ' + (f'{prefix}.{near}' if prefix
                                              else near) + '?'
                else:
                    keys = sorted(str(k) for k in node.keys())
                    hint = f'{where} has: ' + ', '.join(keys[:12]) + (
                        ', ...' if len(keys) > 12 else '')
                key = '.'.join(parts[:depth + 1])
                return f'{key} is not in the config; {hint}'
            node = node[part]
        elif node is None and depth > 0:
            # a key the config has, left at None (e.g. a backbone's
            # init_cfg): filling it in is what the user means
            return None
        else:
            return (f'{where} is a {type(node).__name__}, not a dict: it has '
                    f'no key {part!r}')
    return None


def check_cfg_options(cfg: Mapping, options: Mapping | None,
                      allow_new_keys: bool = False) -> None:
    """Refuse ``--cfg-options`` keys the config does not have.

    Args:
        cfg: The loaded config (before the options are merged).
        options: ``key=value`` overrides, as ``DictAction`` gives them.
        allow_new_keys: Accept keys that are not in the config (the tools'
            ``--cfg-new-keys``), e.g. an argument the config leaves at its
            default. Defaults to False.

    Raises:
        UnknownConfigKeyError: Naming the first unknown key and the nearest
            existing one.
    """
    if allow_new_keys or not options:
        return
    for key in options:
        problem = _missing_key(cfg, key)
        if problem:
            raise UnknownConfigKeyError(
                f'--cfg-options {key}: {problem} (--cfg-new-keys adds keys '
                'the config does not have)')


# the errors above: the tools print their one-line message, no traceback
CONFIG_ERRORS = (ConfigNotFoundError, UnknownConfigKeyError)


def add_cfg_arguments(parser, example: str = 'train_cfg.max_epochs=2') -> None:
    """Add ``--cfg-options`` and ``--cfg-new-keys`` to a tool's parser."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help=f'override config entries, e.g. {example} (lists: '
        "key='[a,b]'); a key the config does not have is refused")
    parser.add_argument(
        '--cfg-new-keys', action='store_true',
        help='let --cfg-options add keys the config does not have')


def add_run_arguments(parser, example: str) -> None:
    """The arguments ``tools/train.py`` and ``tools/test.py`` share:
    ``--data-root``, :func:`add_cfg_arguments`, ``--verbose``,
    ``--launcher`` and the launcher's ``--local-rank``."""
    parser.add_argument(
        '--data-root', metavar='PATH',
        help='data_root of every dataset (evaluator annotation files '
        'follow); unlike --cfg-options, paths may contain blanks')
    add_cfg_arguments(parser, example)
    parser.add_argument('--verbose', action='store_true',
                        help='also print the config, environment and hook '
                        'order (always in the log file of the work dir)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
