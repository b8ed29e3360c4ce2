"""The third-party warnings the package silences
(convnext_dense/known_warnings.py): gone from the runs of its configs, and
only from the module that raises each.

Each case makes mmseg raise the warning the way a UperNet training does,
inside ``catch_warnings`` (a fresh registry: a warning already shown once
shows again) with the filters installed as importing the package installs
them (pytest drops the filters that its collection installed).
"""
from __future__ import annotations

import warnings

import pytest

from convnext_dense.known_warnings import filter_known_warnings


def _build_uper_head():
    from mmengine.registry import DefaultScope
    from mmseg.models.decode_heads import UPerHead
    # builds its loss through mmseg's deprecated build_loss, with the
    # published default avg_non_ignore=False; in mmseg's scope, whatever
    # scope an earlier test of this process left
    with DefaultScope.overwrite_default_scope('mmseg'):
        return UPerHead(in_channels=[4, 8], in_index=[0, 1], channels=4,
                        num_classes=3)


def _load_annotations():
    from mmseg.datasets.transforms import LoadAnnotations
    return LoadAnnotations(reduce_zero_label=True)  # mmseg's ADE20K config


@pytest.mark.parametrize('make', [_build_uper_head, _load_annotations])
def test_mmseg_warnings_of_the_configs_are_silenced(make):
    pytest.importorskip('mmseg')
    with warnings.catch_warnings(record=True) as caught:
        filter_known_warnings()
        make()
    assert [str(w.message) for w in caught] == []


def test_the_same_message_from_another_module_still_warns():
    with warnings.catch_warnings(record=True) as caught:
        filter_known_warnings()
        warnings.warn('``build_loss`` would be deprecated soon (elsewhere)')
    assert len(caught) == 1
