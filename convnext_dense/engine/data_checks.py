"""Clear errors for missing or empty data, before and during training.

mmdet and mmengine already name the file for a missing annotation file or
image and for an image OpenCV cannot decode. Three cases they do not explain:

- a wrong ``data_root``: the error is a ``FileNotFoundError`` for the
  annotation file under it, which does not say which setting to fix;
  :func:`check_dataset_paths` checks every path of the datasets a run will
  build, before anything is built or written, and names the config key;
- a 0-byte image or label file (an interrupted download): OpenCV fails with
  "!buf.empty() in function 'imdecode_'" and no file name;
  :func:`check_dataset_paths` names the file and the config key;
- a file the annotations list but the disk lacks (a deleted COCO image,
  an ADE20K image without its label map): training crashed at the first
  batch that met it, after minutes or hours; :func:`check_listed_files`
  stats every listed file and decodes an evenly spaced sample, before
  anything is built, naming the first missing files and their count;
- an empty dataset (no images, or every image filtered out): mmengine fails
  with "ValueError: need at least one array to concatenate";
  :func:`explain_dataset_errors` turns that into a message naming the
  annotation file and the filter.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import traceback
from typing import Iterator, Sequence

from mmengine.config import Config
from mmengine.dataset import BaseDataset

# the message of np.concatenate([]) in BaseDataset._serialize_data
EMPTY_CONCAT = 'need at least one array to concatenate'
# listed files decoded per dataset by check_listed_files (every one is
# stat-ed); decoding costs ~10 ms a COCO image, a stat ~10 us
DECODE_SAMPLE = 8
# missing files named in the message
NAMED = 3


def _is_remote(path: str) -> bool:
    return '://' in path


def dataset_cfgs(dataset: dict, where: str) -> Iterator[tuple[str, dict]]:
    """The leaf dataset configs under dataset wrappers (Repeat, Concat ...).
    """
    if 'dataset' in dataset:
        yield from dataset_cfgs(dataset['dataset'], f'{where}.dataset')
    elif 'datasets' in dataset:
        for i, sub in enumerate(dataset['datasets']):
            yield from dataset_cfgs(sub, f'{where}.datasets[{i}]')
    else:
        yield where, dataset


def _check_dataset(where: str, dataset: dict) -> None:
    # the same joins as BaseDataset._join_prefix
    data_root = dataset.get('data_root') or ''
    if data_root and not _is_remote(data_root) and not osp.isdir(data_root):
        raise FileNotFoundError(
            f"{where}.data_root: directory '{data_root}' does not exist "
            f'(relative paths start at {os.getcwd()}). Set it with '
            '--data-root PATH (every dataset of the run; any path), or '
            f'--cfg-options {where}.data_root=PATH for this one (mmengine '
            'removes every blank from --cfg-options values)')

    def resolve(path: str) -> str:
        return path if osp.isabs(path) or not data_root else osp.join(
            data_root, path)

    ann_file = dataset.get('ann_file') or ''
    if ann_file and not _is_remote(resolve(ann_file)):
        if not osp.isfile(resolve(ann_file)):
            raise FileNotFoundError(
                f"{where}.ann_file: '{resolve(ann_file)}' does not exist")
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        if not (isinstance(prefix, str) and prefix
                and not _is_remote(resolve(prefix))):
            continue
        if not osp.isdir(resolve(prefix)):
            raise FileNotFoundError(
                f"{where}.data_prefix.{key}: directory '{resolve(prefix)}' "
                'does not exist')
        empty = _empty_files(resolve(prefix))
        if empty:
            raise OSError(
                f"{where}.data_prefix.{key}: {len(empty)} empty (0-byte) "
                f"file(s) under '{resolve(prefix)}', e.g. '{empty[0]}': an "
                'interrupted download or copy? Replace or remove them')


def _empty_files(dirname: str) -> list[str]:
    """The 0-byte files under ``dirname`` (recursive), sorted.

    OpenCV fails on an empty image or label file with "!buf.empty() in
    function 'imdecode_'", without the file's name; finding them here costs
    one ``stat`` per file.
    """
    empty = []
    for root, _, files in os.walk(dirname, followlinks=True):
        for name in files:
            path = osp.join(root, name)
            with contextlib.suppress(OSError):  # vanished meanwhile
                if os.stat(path).st_size == 0:
                    empty.append(path)
    return sorted(empty)


def _named(paths: Sequence[str]) -> str:
    names = ', '.join(f"'{path}'" for path in paths[:NAMED])
    return names + (', ...' if len(paths) > NAMED else '')


def check_listed_files(files: Sequence[str], where: str, listed_by: str,
                       decode: int | None = None) -> None:
    """Checks that every file a dataset lists exists and is not empty, and
    decodes an evenly spaced sample of them.

    Args:
        files: The paths the dataset will read, as it will join them.
        where: The config key of the dataset, for the message.
        listed_by: What lists them (the annotation file, or the image
            folder a label map is expected for), for the message.
        decode: How many to decode (with PIL; a truncated or corrupt file
            fails). Defaults to None: :data:`DECODE_SAMPLE`.

    Raises:
        FileNotFoundError: Naming the count and the first missing files.
        OSError: Naming the count and the first empty files, or a sampled
            file that does not decode.
    """
    from PIL import Image
    missing, empty = [], []
    for path in files:
        try:
            if os.stat(path).st_size == 0:
                empty.append(path)
        except OSError:
            missing.append(path)
    if missing:
        raise FileNotFoundError(
            f'{where}: {len(missing)} of the {len(files)} files listed by '
            f'{listed_by} do not exist: {_named(missing)}')
    if empty:
        raise OSError(
            f'{where}: {len(empty)} of the {len(files)} files listed by '
            f'{listed_by} are empty (0 bytes): {_named(empty)}; an '
            'interrupted download or copy? Replace or remove them')
    decode = DECODE_SAMPLE if decode is None else decode
    step = max(1, len(files) // decode) if decode else len(files) + 1
    for path in list(files)[::step][:decode]:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as err:  # PIL raises OSError, SyntaxError, ...
            raise OSError(
                f"{where}: '{path}', listed by {listed_by}, does not decode "
                f'as an image ({err}); truncated by an interrupted download '
                'or copy?') from None


def check_dataset_paths(cfg: Config,
                        splits: Sequence[str] = ('train', 'val')) -> None:
    """Checks that the data directories and files a run needs exist.

    For each ``{split}_dataloader`` (and the ``ann_file`` of each
    ``{split}_evaluator``, which COCO metrics read) it checks ``data_root``,
    ``ann_file`` and every ``data_prefix`` entry, joined with ``data_root``
    as mmengine's ``BaseDataset`` joins them, and that no file under a
    ``data_prefix`` directory is empty (0 bytes). Remote paths (``s3://``
    ...) are not checked. It reads no file, only lists and stats them.

    Args:
        cfg (Config): The config, after ``--cfg-options``.
        splits (Sequence[str]): Which splits the run builds. Defaults to
            ('train', 'val'); a test run passes ('test', ).

    Raises:
        FileNotFoundError: Naming the config key and the missing path.
        OSError: Naming the config key and an empty file.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            for where, dataset in dataset_cfgs(loader['dataset'],
                                                f'{split}_dataloader.dataset'):
                _check_dataset(where, dataset)
        evaluator = cfg.get(f'{split}_evaluator')
        evaluators = evaluator if isinstance(evaluator, (list, tuple)) else [
            evaluator
        ]
        for i, metric in enumerate(evaluators):
            ann_file = (metric or {}).get('ann_file')
            if ann_file and not _is_remote(ann_file) and not osp.isfile(
                    ann_file):
                key = f'{split}_evaluator' + (
                    f'[{i}]' if len(evaluators) > 1 else '')
                raise FileNotFoundError(
                    f"{key}.ann_file: '{ann_file}' does not exist")


def _dataset_being_built(tb) -> BaseDataset | None:
    """The dataset whose ``_serialize_data`` raised, from the traceback."""
    for frame, _ in traceback.walk_tb(tb):
        candidate = frame.f_locals.get('self')
        if (frame.f_code.co_name == '_serialize_data'
                and isinstance(candidate, BaseDataset)):
            return candidate
    return None


@contextlib.contextmanager
def explain_dataset_errors() -> Iterator[None]:
    """Re-raises mmengine's error for an empty dataset with an explanation.

    Use it around building or running the Runner (datasets are built in
    ``Runner.train()``)::

        with explain_dataset_errors():
            runner.train()

    Every other exception passes through unchanged.

    Raises:
        ValueError: Naming the dataset class, its annotation file, its
            ``filter_cfg`` and classes, when a dataset ended up with no
            samples.
    """
    try:
        yield
    except ValueError as err:
        dataset = _dataset_being_built(err.__traceback__)
        if EMPTY_CONCAT not in str(err) or dataset is None:
            raise
        classes = tuple(dataset.metainfo.get('classes') or ())
        if len(classes) > 5:
            classes = f'{len(classes)} classes: {", ".join(classes[:5])}, ...'
        raise ValueError(
            f'{type(dataset).__name__} from {dataset.ann_file!r} is empty: '
            'no sample is left after loading and filtering (filter_cfg='
            f'{dataset.filter_cfg}). Check that the annotation file lists '
            'images, and annotations of the classes in metainfo '
            f'({classes}).') from err
