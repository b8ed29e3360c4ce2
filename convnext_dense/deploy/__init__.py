"""Deployment: ONNX graphs of backbones, necks and whole models and their
export (:mod:`.onnx_export`), and an onnxruntime runtime that returns
mmdet/mmseg data samples (:mod:`.runtime`). Needs ``onnx`` and
``onnxruntime`` (pip extra ``deploy``); nothing here is imported by the
package itself, so training runs without them. Exporting a trained config
(build, load the checkpoint, export) is
:func:`convnext_dense.apis.export.export_onnx`."""
