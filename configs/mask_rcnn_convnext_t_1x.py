# Mask R-CNN, ConvNeXt-T (ImageNet-1K), 1x, COCO: 44.2 box / 40.1 mask AP
# reported after the paper; no official config was released. The 3x config
# with the 1x schedule: 12 epochs, lr x0.1 after epochs 8 and 11; same
# augmentation, lr, decay and drop path.
_base_ = './mask_rcnn_convnext_t.py'

max_epochs = 12  # 1x
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
