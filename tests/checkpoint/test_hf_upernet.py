"""A trained Hugging Face UperNet (``UperNetForSemanticSegmentation`` on
ConvNeXt) in our UperNet configs, and back (convnext_dense/models/
hf_upernet.py): a tiny random one written by ``save_pretrained`` is read the
way ``tools/test.py`` reads a checkpoint (mmengine's ``load_checkpoint``),
must give transformers' logits, and converts back to the same file."""
from __future__ import annotations

import copy
import os.path as osp
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmseg')
transformers = pytest.importorskip('transformers')

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from convnext_dense.checkpoint.backbone import read_checkpoint  # noqa: E402
from convnext_dense.checkpoint.hf_upernet import (is_hf_upernet,  # noqa: E402
                                              mmseg_to_upernet,
                                              upernet_to_mmseg)

from models.test_convnext import randomize_  # noqa: E402

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs',
                  'upernet_convnext_t.py')
DIMS, CLASSES, CHANNELS, AUX = [16, 32, 64, 128], 5, 32, 16


def hf_upernet(seed: int = 0) -> torch.nn.Module:
    from transformers import (ConvNextConfig, UperNetConfig,
                              UperNetForSemanticSegmentation)
    backbone = ConvNextConfig(
        depths=[1, 1, 1, 1], hidden_sizes=DIMS,
        out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    model = UperNetForSemanticSegmentation(UperNetConfig(
        backbone_config=backbone, hidden_size=CHANNELS,
        auxiliary_channels=AUX, num_labels=CLASSES))
    randomize_(model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, buf in model.named_buffers():  # BatchNorm statistics too
        if name.endswith('running_mean'):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith('running_var'):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return model.eval()


def ours() -> torch.nn.Module:
    """upernet_convnext_t.py at the sizes of the Hugging Face model."""
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(Config.fromfile(CONFIG).model)
    cfg.backbone.update(arch='test', init_cfg=None)
    cfg.decode_head.update(in_channels=DIMS, channels=CHANNELS,
                           num_classes=CLASSES)
    cfg.auxiliary_head.update(in_channels=DIMS[2], channels=AUX,
                              num_classes=CLASSES)
    init_default_scope('mmseg')
    return revert_sync_batchnorm(MODELS.build(cfg)).eval()


def test_hf_upernet_loads_with_the_same_logits_and_converts_back(
        tmp_path: Path) -> None:
    src = hf_upernet()
    src.save_pretrained(tmp_path)
    path = tmp_path / 'model.safetensors'
    raw = read_checkpoint(path)
    assert is_hf_upernet(raw)

    model = ours()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # what tools/test.py does with `cfg.load_from`, warnings included
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    mapped = upernet_to_mmseg(raw)
    assert sorted(mapped) == sorted(model.state_dict())  # nothing left over
    assert all(not torch.equal(before[k], v) for k, v in
               model.state_dict().items() if v.is_floating_point()
               and k.endswith('weight'))

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        theirs = src(pixel_values=x)
        logits = model.encode_decode(
            x, [dict(img_shape=(64, 96), ori_shape=(64, 96))] * 2)
        aux = model.auxiliary_head.forward(model.extract_feat(x))
    err = (logits - theirs.logits).abs().max().item()
    assert logits.shape == (2, CLASSES, 64, 96) and err <= 1e-4, err
    theirs_aux = src.auxiliary_head(src.backbone(x).feature_maps)
    assert (aux - theirs_aux).abs().max() <= 1e-4

    # ours -> Hugging Face: the file transformers wrote, exactly
    back = mmseg_to_upernet(model.state_dict())
    assert sorted(back) == sorted(raw)
    for key, value in raw.items():
        assert torch.equal(back[key], value), key


def test_unknown_keys_are_refused() -> None:
    raw = dict(hf_upernet().state_dict())
    raw['text_encoder.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match='text_encoder.weight'):
        upernet_to_mmseg(raw)
