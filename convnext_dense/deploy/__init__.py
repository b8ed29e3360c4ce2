"""Deployment: ONNX export of backbones, necks and whole models, an
onnxruntime runtime that returns mmdet/mmseg data samples, and a CPU
inference benchmark. Needs ``onnx`` and ``onnxruntime``
(``requirements/runtime.txt``); nothing here is imported by the package
itself, so training runs without them."""
