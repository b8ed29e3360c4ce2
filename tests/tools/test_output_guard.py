"""No tool writes over its inputs (convnext_dense/fileio.check_outputs,
convnext_dense/apis/outputs.py); tools/infer.py's cases are in
tests/apis/test_infer_tool.py.

``tools/test.py --show-dir`` pointed at the validation image folder painted
its predictions over the images (mmdet names each picture after its
image). Each tool is run here with an output on an input; each must stop
with one line naming both, before any work: no work dir, every input
byte-identical. The inputs are the demo Cascade Mask R-CNN config, an
untrained checkpoint of it and 2 generated 64-pixel COCO images.
"""
from __future__ import annotations

import hashlib
import os
import runpy
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402

from convnext_dense.tasks import build_model  # noqa: E402
from convnext_dense.toy_data import generate_toy_coco  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'demo' / 'cascade_convnext_demo.py'


def tool(name: str):
    return runpy.run_path(str(REPO / 'tools' / name), run_name=name)['main']


def digest(*paths: Path) -> dict:
    files = [f for p in paths for f in ([p] if p.is_file() else
                                         sorted(p.rglob('*')))]
    return {str(f): hashlib.md5(f.read_bytes()).hexdigest()
            for f in files if f.is_file()}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('guard')
    data = root / 'data'
    generate_toy_coco(data, num_train=1, num_val=2, image_size=64, seed=0)
    torch.manual_seed(0)
    model = build_model(Config.fromfile(str(CONFIG)))
    checkpoint = root / 'det.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)),
               checkpoint)
    return dict(data=data, images=data / 'val2017', checkpoint=checkpoint,
                annotations=data / 'annotations' / 'instances_val2017.json')


def assert_refused(run, expected: str, inputs: dict, *untouched: Path):
    before = digest(inputs['data'], inputs['checkpoint'], CONFIG, *untouched)
    with pytest.raises(SystemExit) as info:
        run()
    message = str(info.value)
    assert message.startswith('error: ') and '\n' not in message, message
    assert expected in message, message
    assert digest(inputs['data'], inputs['checkpoint'], CONFIG,
                  *untouched) == before


@pytest.mark.parametrize('option', ['show_dir', 'show_dir_link',
                                    'show_dir_inside', 'out', 'work_dir'])
def test_test_tool_refuses_outputs_on_inputs(inputs, tmp_path, option):
    images, work = inputs['images'], tmp_path / 'work'
    link = tmp_path / 'pictures'
    link.symlink_to(images)
    args, expected = dict(
        # the reported case: painted PNGs replaced the images
        show_dir=(['--show-dir', str(images)], f'--show-dir {images} is the '
                  'input folder test_dataloader.dataset.data_prefix.img '
                  f'{images}/: the outputs would replace inputs'),
        show_dir_link=(['--show-dir', str(link)], f'--show-dir {link} is the '
                       'input folder test_dataloader.dataset.data_prefix.img'),
        show_dir_inside=(['--show-dir', f'{images}/vis'],
                         f'--show-dir {images}/vis is inside the input '
                         'folder test_dataloader.dataset.data_prefix.img'),
        out=(['--out', str(inputs['annotations'])],
             f"--out {inputs['annotations']} is the input file "
             'test_dataloader.dataset.ann_file'),
        work_dir=([], f'--work-dir {images}/work is inside the input folder'),
    )[option]
    work = images / 'work' if option == 'work_dir' else work
    main = tool('test.py')
    assert_refused(lambda: main([
        str(CONFIG), str(inputs['checkpoint']), '--work-dir', str(work),
        '--data-root', f"{inputs['data']}/", *args]), expected, inputs)
    assert not work.exists()  # refused before the Runner was built


def test_train_tool_refuses_work_dir_in_images(inputs):
    work = inputs['images'] / 'work'
    main = tool('train.py')
    assert_refused(lambda: main([
        str(CONFIG), '--work-dir', str(work), '--data-root',
        f"{inputs['data']}/", '--cfg-options', 'train_cfg.max_epochs=1']),
        f'the work dir {work} is inside the input folder '
        'val_dataloader.dataset.data_prefix.img', inputs)
    assert not work.exists()


def test_demo_refuses_work_dir_in_images(inputs, monkeypatch):
    # the demo reads data/toy_coco under the working directory
    monkeypatch.chdir(inputs['data'].parent)
    toy = inputs['data'].parent / 'data' / 'toy_coco'
    if not toy.exists():
        toy.parent.mkdir(exist_ok=True)
        toy.symlink_to(inputs['data'])
    work = 'data/toy_coco/val2017/demo'
    main = tool('demo.py')
    assert_refused(lambda: main([
        'det', '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1']),
        f'the pictures folder {os.path.abspath(work)}/vis is inside the '
        'input folder test_dataloader.dataset.data_prefix.img '
        'data/toy_coco/val2017/', inputs)
    assert not (inputs['images'] / 'demo').exists()


@pytest.mark.parametrize('target', ['checkpoint', 'config_link'])
def test_export_refuses_out_on_inputs(inputs, tmp_path, target):
    pytest.importorskip('onnx')
    config = tmp_path / 'det.py'
    config.write_text(CONFIG.read_text().replace(
        "_base_ = '", f"_base_ = '{CONFIG.parent}/"))
    if target == 'checkpoint':
        out = inputs['checkpoint']
        expected = f'--out {out} is the checkpoint {out}: choose another file'
    else:
        out = tmp_path / 'model.onnx'
        out.symlink_to(config)
        expected = f'--out {out} is the config {config}'
    main = tool('export_onnx.py')
    assert_refused(lambda: main([str(config), str(inputs['checkpoint']),
                                 '--out', str(out)]), expected, inputs,
                   config)


@pytest.mark.parametrize('dst', ['same', 'link'])
def test_convert_refuses_dst_on_src(inputs, tmp_path, dst, capsys):
    from convnext_dense.models.convnext import ConvNeXt
    src = tmp_path / 'backbone.pth'
    torch.save(dict(model=ConvNeXt(arch='test').state_dict()), src)
    target = src if dst == 'same' else tmp_path / 'converted.pth'
    if dst == 'link':
        target.symlink_to(src)
    before = digest(src)
    status = tool('convert_checkpoint.py')([str(src), str(target), '--to',
                                            'mmpretrain', '--force'])
    assert status == 1
    assert capsys.readouterr().err == (
        f'error: DST {target} is the source {src}: converting in place '
        'would lose the source; write to another file\n')
    assert digest(src) == before



@pytest.mark.slow
def test_test_tool_leaves_a_trainings_config_alone(inputs, tmp_path):
    """tools/test.py --work-dir of a training replaced the config that
    training dumped there (which infer.py WORK_DIR and --resume read)."""
    work = tmp_path / 'training'
    work.mkdir()
    dumped = work / CONFIG.name
    dumped.write_text('# the training dumped this\n')
    metrics = tool('test.py')([
        str(CONFIG), str(inputs['checkpoint']), '--work-dir', str(work),
        '--data-root', f"{inputs['data']}/"])
    assert 'coco/bbox_mAP' in metrics
    assert dumped.read_text() == '# the training dumped this\n'
    [log_dir] = [p for p in work.iterdir() if p.is_dir()]
    # the test run's own config, in its log dir
    assert f"load_from = '{inputs['checkpoint']}'" in (
        log_dir / CONFIG.name).read_text()
