"""Explaining a CNN's decision: Grad-CAM and CAM, occlusion, tests of the maps, an adversarial example.

* ``gradcam``: targets, hooks and maths, the usual target layer of each architecture;
* ``occlusion``: occlusion sensitivity (Zeiler & Fergus, 2014), the drop in probability when a
  patch is hidden;
* ``deletion``: deletion and insertion curves and their areas (Petsiuk et al., 2018), against
  a random ranking;
* ``adversarial``: the fast gradient sign method (FGSM; Goodfellow et al., 2015);
* ``overlays``: heat maps drawn over the MRI;
* ``sanity``: cascading model randomization (Adebayo et al., 2018).
"""

from .gradcam import (EPS, as_targets, class_activation_map, classifier_of, ClassTarget,
                      default_target_layer, finish_maps, grad_cam, GradCAM, layers_by_depth, normalize_maps,
                      SoftmaxTarget, target_classes, TargetSpec, upsample_maps)
from .occlusion import black_level, occlusion_map, window_starts
from .deletion import (area_under_curve, blurred, deletion_curves, insertion_curves, pixel_ranking,
                       random_saliency, reveal_curves)
from .adversarial import AdversarialExample, fgsm, input_gradient
from .overlays import HEAT_CMAP, add_heat_colorbar, overlay, show_overlays
from .sanity import (cascading_randomization, randomization_cascade, RandomizationResult, rank_correlation,
                     reinitialize)

__all__ = ["EPS", "as_targets", "class_activation_map", "classifier_of", "ClassTarget",
           "default_target_layer", "finish_maps", "grad_cam", "GradCAM", "layers_by_depth", "normalize_maps",
           "SoftmaxTarget", "target_classes", "TargetSpec", "upsample_maps", "overlay", "show_overlays",
           "HEAT_CMAP", "add_heat_colorbar",
           "cascading_randomization", "randomization_cascade", "RandomizationResult", "rank_correlation",
           "reinitialize", "black_level", "occlusion_map", "window_starts", "area_under_curve", "blurred",
           "deletion_curves", "insertion_curves", "pixel_ranking", "random_saliency", "reveal_curves",
           "AdversarialExample", "fgsm", "input_gradient"]
