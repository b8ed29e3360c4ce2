"""Run a trained detector or segmentor on images and paint its predictions.

The models are built by mmdet's :func:`~mmdet.apis.init_detector` and
mmseg's :func:`~mmseg.apis.init_model`, run by their ``inference_detector``
/ ``inference_model``, and painted by their visualizers
(:class:`~mmdet.visualization.DetLocalVisualizer`: boxes, masks, labels and
scores; :class:`~mmseg.visualization.SegLocalVisualizer`: a colour overlay
with class names). What this module adds is what those leave loose:

- the checkpoint is loaded strictly: every missing, unexpected or
  mis-shaped tensor is reported and nothing runs (mmengine's loader only
  logs warnings and leaves such weights random);
- class names and palette come from the checkpoint, else from the config's
  dataset, and must match the model's number of classes;
- images are read up front, so an unreadable file is named;
- a Runner work dir can stand for the config (the copy the Runner dumps
  there) and for the checkpoint (the one ``last_checkpoint`` names).
"""
from __future__ import annotations

import logging
import os.path as osp
import warnings

import numpy as np
from mmengine.config import Config
from mmengine.logging import print_log

from convnext_dense.tasks import detect_task, inference_pipeline

from .images import (MAX_SIDE, UnreadableImageError,
                     cap_size, check_image, check_outputs, list_images,
                     output_files, read_image)

from .model_files import (dataset_meta_for, load_checkpoint_strict,
                          resolve_checkpoint, resolve_config)

BACKENDS = ('pytorch', 'onnxruntime', 'openvino')


# ---------------------------------------------------------------------------
# the inferencer
# ---------------------------------------------------------------------------

class Inferencer:
    """A detector or segmentor from a config and a checkpoint, ready to run
    on images and paint the results.

    Args:
        config: Config file, or a Runner work dir holding the dumped config.
        checkpoint: Checkpoint file, or a Runner work dir (its latest
            checkpoint).
        device: Where the model runs, e.g. 'cpu' or 'cuda:0'. Defaults to
            'cpu'.
        score_thr: Detection: boxes scoring below it are not painted.
            Defaults to 0.3 (mmdet's demo default).
        opacity: Segmentation: weight of the colour overlay. Defaults to 0.5.
        backend: 'pytorch', or 'onnxruntime' or 'openvino' with
            ``checkpoint`` an .onnx file of ``tools/export_onnx.py`` (class
            names from its metadata; see
            :mod:`convnext_dense.deploy.runtime`). Defaults to 'pytorch'.
        max_side: Images with a longer side are scaled down to it before
            the model runs, and painted at that size (a warning says so):
            a 6000x4000 photo otherwise gets masks or logits at full size.
            None: never. Defaults to 4096.
        cfg_options: Config overrides, as ``--cfg-options`` gives them; a
            key the config does not have is refused. Defaults to None.
        allow_new_keys: Let ``cfg_options`` add keys. Defaults to False.
        precision: 'fp32', 'bf16', 'fp16' or 'auto'
            (:func:`~convnext_dense.engine.resolve_precision` for
            ``device``): the PyTorch model runs under ``torch.autocast``
            in it and hands float32 predictions back; OpenVINO takes fp32
            and bf16 as its precision hint; onnxruntime runs fp32 graphs
            only. Defaults to 'fp32'.

    Images are (H, W, 3) uint8 arrays in BGR order (``cv2.imread``);
    ``predict(img, rgb=True)`` takes RGB (PIL, timm, Hugging Face). Other
    dtypes or shapes raise :class:`BadImageError` saying how to convert.
    """

    def __init__(self,
                 config: str,
                 checkpoint: str,
                 device: str = 'cpu',
                 score_thr: float = 0.3,
                 opacity: float = 0.5,
                 backend: str = 'pytorch',
                 max_side: int | None = MAX_SIDE,
                 cfg_options: dict | None = None,
                 allow_new_keys: bool = False,
                 precision: str = 'fp32') -> None:
        import convnext_dense  # noqa: F401  (registers the backbone)
        from convnext_dense.engine.precision import (PrecisionError,
                                                     resolve_precision)

        from .config_args import check_cfg_options

        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}; got '
                             f'{backend!r}')
        if backend == 'onnxruntime' and precision not in ('auto', 'fp32'):
            raise PrecisionError(
                f'precision {precision}: the onnxruntime backend runs fp32 '
                'graphs only (use --precision fp32, or the pytorch backend)')
        if backend == 'openvino' and precision == 'fp16':
            raise PrecisionError('precision fp16: the openvino backend runs '
                                 'fp32 or bf16')
        self.backend = backend
        self.precision = resolve_precision(
            'fp32' if backend == 'onnxruntime' else precision,
            device if backend == 'pytorch' else 'cpu')
        self.config_file = resolve_config(config)
        cfg = Config.fromfile(self.config_file)
        if cfg_options:
            check_cfg_options(cfg, cfg_options, allow_new_keys)
            cfg.merge_from_dict(cfg_options)
        self.task = detect_task(cfg)
        self.score_thr = score_thr
        self.max_side = max_side
        if backend != 'pytorch':
            from convnext_dense.deploy.runtime import load_onnx_model
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(f'ONNX file not found: {checkpoint}')
            self.checkpoint_file = checkpoint
            self.model = load_onnx_model(checkpoint, cfg, self.task,
                                         backend=backend,
                                         precision=self.precision.name)
            self.visualizer = self._build_visualizer(opacity)
            return
        self.checkpoint_file = resolve_checkpoint(checkpoint)
        # both warn that no checkpoint was given (it is loaded below);
        # record=True swallows the warnings even where they reset filters
        with warnings.catch_warnings(record=True):
            if self.task == 'det':
                from mmdet.apis import init_detector
                self.model = init_detector(cfg, None, device=device)
            else:
                from mmengine.model.utils import revert_sync_batchnorm
                from mmseg.apis import init_model

                # mmdet's init_detector reverts SyncBN, mmseg's does not
                self.model = revert_sync_batchnorm(
                    init_model(cfg, None, device=device))
        checkpoint_meta = load_checkpoint_strict(self.model,
                                                 self.checkpoint_file)
        self.model.dataset_meta = dataset_meta_for(self.model, self.task,
                                                   checkpoint_meta, cfg)
        self.model.eval()
        self._pipeline = inference_pipeline(cfg, 'det') \
            if self.task == 'det' else None
        self.visualizer = self._build_visualizer(opacity)

    def _build_visualizer(self, opacity: float):
        # a visualizer of our own, not the global instance a Runner may hold
        name = f'convnext_dense_infer_{id(self)}'
        if self.task == 'det':
            from convnext_dense.engine.quiet import \
                det_local_visualizer_class
            visualizer = det_local_visualizer_class()(name=name, alpha=0.5)
            visualizer.dataset_meta = self.model.dataset_meta
        else:
            from mmseg.visualization import SegLocalVisualizer
            visualizer = SegLocalVisualizer(name=name, alpha=opacity)
            visualizer.set_dataset_meta(**self.model.dataset_meta)
        return visualizer

    def prepare(self, image: np.ndarray, rgb: bool = False) -> np.ndarray:
        """The checked BGR uint8 image the model sees: ``image``
        (:func:`~.images.check_image`), scaled down to ``max_side``."""
        image = check_image(image, rgb)
        capped = cap_size(image, self.max_side)
        if capped is not image:
            print_log(
                f'image of {image.shape[1]}x{image.shape[0]} is larger than '
                f'max_side={self.max_side}: predicted and painted at '
                f'{capped.shape[1]}x{capped.shape[0]} (set max_side, '
                'tools/infer.py --max-side, to change)', logger='current',
                level=logging.WARNING)
        return capped

    def predict(self, image: np.ndarray, rgb: bool = False):
        """Run the model on one (H, W, 3) uint8 image, BGR unless ``rgb``.

        Returns:
            A ``DetDataSample`` (``pred_instances``: boxes, scores, labels,
            masks) or a ``SegDataSample`` (``pred_sem_seg``), at the size of
            the input image (at most ``max_side``).

        Raises:
            BadImageError: For an image that is not (H, W, 3) uint8.
        """
        image = self.prepare(image, rgb)
        if self.backend != 'pytorch':
            return self.model.predict(image)
        from convnext_dense.engine.autocast import outputs_to_float32
        with self.precision.autocast():
            if self.task == 'det':
                from mmdet.apis import inference_detector
                result = inference_detector(self.model, image, self._pipeline)
            else:
                from mmseg.apis import inference_model
                result = inference_model(self.model, image)
        return outputs_to_float32(result)

    def draw(self, image: np.ndarray, result, out_file: str | None = None,
             rgb: bool = False) -> np.ndarray:
        """Paint a prediction over its (H, W, 3) uint8 image, BGR unless
        ``rgb``.

        Returns:
            The painted image, RGB, the size of the input; also written to
            ``out_file`` if given.
        """
        image = cap_size(check_image(image, rgb), self.max_side)
        rgb = np.ascontiguousarray(image[..., ::-1])
        kwargs = dict(pred_score_thr=self.score_thr) if self.task == 'det' \
            else dict(with_labels=True)
        self.visualizer.add_datasample(
            osp.basename(out_file or 'result'),
            rgb,
            data_sample=result,
            draw_gt=False,
            draw_pred=True,
            show=False,
            out_file=out_file,
            **kwargs)
        return self.visualizer.get_image()


def run_inference(config: str,
                  checkpoint: str,
                  inputs: str,
                  out_dir: str,
                  device: str = 'cpu',
                  score_thr: float = 0.3,
                  opacity: float = 0.5,
                  progress: bool = True,
                  backend: str = 'pytorch',
                  max_side: int | None = MAX_SIDE,
                  cfg_options: dict | None = None,
                  allow_new_keys: bool = False,
                  precision: str = 'fp32') -> list[str]:
    """Paint the predictions of a model on an image or a folder of images.

    Each input ``dir/sub/name.jpg`` is painted to ``out_dir/sub/name.png``
    at its own size (``name.jpg.png`` where another input would also give
    ``name.png``). Unreadable images in a folder do not stop the others;
    they are reported together at the end.

    Args:
        config: Config file or Runner work dir.
        checkpoint: Checkpoint file or Runner work dir.
        inputs: Image file or directory (searched recursively).
        out_dir: Where the PNGs go; created if needed.
        device: Device to run on. Defaults to 'cpu'.
        score_thr: Detection score threshold for painting. Defaults to 0.3.
        opacity: Segmentation overlay weight. Defaults to 0.5.
        progress: Show a progress bar. Defaults to True.
        backend: 'pytorch', or 'onnxruntime' or 'openvino' with
            ``checkpoint`` an .onnx file. Defaults to 'pytorch'.
        max_side, cfg_options, allow_new_keys: As :class:`Inferencer`'s.
        precision: See :class:`Inferencer`. Defaults to 'fp32'.

    Returns:
        The written files, in input order.

    Raises:
        FileNotFoundError: If the config, checkpoint or input is missing.
        OutputOverwritesInputError: If an output would replace an input.
        CheckpointMismatchError: If the checkpoint does not fit the config.
        UnreadableImageError: If any input could not be decoded (after
            the readable ones are written), naming each file.
    """
    images = list_images(inputs)  # first: fail before building anything
    model_files = [('the config', resolve_config(config))]
    if backend == 'pytorch':
        model_files.append(('the checkpoint', resolve_checkpoint(checkpoint)))
    else:
        model_files.append(('the ONNX file', checkpoint))
    check_outputs(images, inputs, out_dir, tuple(model_files))
    if len(images) == 1 and osp.isfile(inputs):
        read_image(images[0][0])  # one named image: fail fast if broken
    inferencer = Inferencer(config, checkpoint, device=device,
                            score_thr=score_thr, opacity=opacity,
                            backend=backend, max_side=max_side,
                            cfg_options=cfg_options,
                            allow_new_keys=allow_new_keys,
                            precision=precision)
    print_log(
        f'{inferencer.task}: {inferencer.config_file} with '
        f'{inferencer.checkpoint_file}, {len(images)} image(s) -> {out_dir}',
        logger='current')
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(images))
    written, unreadable = [], []
    for (file, _), out_file in zip(images, output_files(out_dir, images)):
        try:
            image = read_image(file)
        except UnreadableImageError as err:
            unreadable.append(str(err))
        else:
            inferencer.draw(image, inferencer.predict(image), out_file)
            written.append(out_file)
        if bar is not None:
            bar.update()
    if unreadable:
        raise UnreadableImageError(
            f'{len(unreadable)} of {len(images)} input(s) could not be read '
            f'({len(written)} painted to {out_dir}):\n' +
            '\n'.join(unreadable))
    return written
