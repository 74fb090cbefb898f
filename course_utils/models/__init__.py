"""The PyTorch networks of the course and tools to look inside them.

* ``cnn``: the small CNN of lesson 08 and VGG's block (``vgg_block``); ``resnet``: residual
  and plain networks (lesson 09); ``efficientnet``: MBConv blocks and compound scaling (lesson 11); ``pretrained``:
  ImageNet backbones and head swaps (lessons 10 and 11);
* ``inspection``: parameter counts, receptive fields, a layer's output through a hook,
  ``unwrap`` and ``to_device``.
"""

from .cnn import LESSON08_CNN, SmallCNN, conv_block, conv_macs, vgg_block
from .inspection import (capture_output, count_parameters, feature_maps, parameter_table, receptive_field,
                         to_device, unwrap)

__all__ = ["LESSON08_CNN", "SmallCNN", "conv_block", "conv_macs", "vgg_block", "capture_output", "count_parameters", "feature_maps",
           "parameter_table", "receptive_field", "to_device", "unwrap"]
