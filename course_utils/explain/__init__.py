"""Explaining a CNN's decision: Grad-CAM and CAM, overlays, and a sanity check.

* ``gradcam``: targets, hooks and maths, the usual target layer of each architecture;
* ``overlays``: heat maps drawn over the MRI;
* ``sanity``: cascading model randomization (Adebayo et al., 2018).
"""

from .gradcam import (EPS, as_targets, class_activation_map, classifier_of, ClassTarget,
                      default_target_layer, finish_maps, grad_cam, GradCAM, layers_by_depth, normalize_maps,
                      SoftmaxTarget, target_classes, TargetSpec, upsample_maps)
from .overlays import overlay, show_overlays
from .sanity import (cascading_randomization, randomization_cascade, RandomizationResult, rank_correlation,
                     reinitialize)

__all__ = ["EPS", "as_targets", "class_activation_map", "classifier_of", "ClassTarget",
           "default_target_layer", "finish_maps", "grad_cam", "GradCAM", "layers_by_depth", "normalize_maps",
           "SoftmaxTarget", "target_classes", "TargetSpec", "upsample_maps", "overlay", "show_overlays",
           "cascading_randomization", "randomization_cascade", "RandomizationResult", "rank_correlation",
           "reinitialize"]
