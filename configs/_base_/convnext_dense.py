# Shared by every config: registers convnext_dense's modules (backbone,
# layer-decay constructor, hooks) under the `convnext_dense` scope, so that
# mmdet and mmseg configs alike can say type='convnext_dense.ConvNeXt'.
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
