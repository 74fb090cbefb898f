"""The lesson-15 app: pick or upload an MRI slice, pick a trained model, see what it says.

* ``upload``: checking and decoding an uploaded file;
* ``gallery``: a few slices of the official Testing split;
* ``analysis``: probabilities and Grad-CAM of one image (through ``training.inference``);
* ``guard``: "I don't know": an out-of-distribution guard with thresholds chosen on
  validation images, temperature-scaled probabilities, and the check for training images;
* ``figures``: what the app draws; ``ui``: the widgets; ``serve``: Voilà.

A course demo, not a diagnostic tool: the models saw one public dataset of 2-D slices, the
probabilities are not calibrated certainties, and a heat map is not a segmentation.
"""

from .upload import (MAX_ASPECT, MAX_BYTES, MAX_PIXELS, MIN_SIDE, check_dimensions, decode_upload,
                     decompression_bomb_png, UploadError)
from .gallery import gallery, GalleryItem, load_gallery_image
from .guard import (ENERGY_KEEP, IMAGE_KEEP, REJECT_MESSAGE, central_range, energy_score, fit_guard, Guard, roughness,
                    load_guard, max_softmax, model_logits, threshold_keeping, training_index, TrainingIndex,
                    TrainingMatch, Verdict)
from .analysis import analyse, Analysis, grad_cam_map, one_thread, predict_probabilities, prepare
from .figures import figure_png, overlay_figure, probability_figure, result_figure, show_figure
from .ui import (answer_status, DISCLAIMER, MODEL_NAMES, PREFERRED, available_models, build_app, ClassifierApp, GUARD_VAL_PER_CLASS,
                 GuardShelf,
                 ModelShelf, notices_html, probability_table, STATUS_COLOURS)
from .serve import APP_TAG, LESSON, PAGE_TITLE, WEBSOCKET_MAX_BYTES, app_notebook, voila_command, write_app_notebook

__all__ = ["MAX_ASPECT", "MAX_BYTES", "MAX_PIXELS", "MIN_SIDE", "check_dimensions", "decode_upload",
           "decompression_bomb_png", "UploadError", "gallery", "GalleryItem", "load_gallery_image",
           "ENERGY_KEEP", "IMAGE_KEEP", "REJECT_MESSAGE", "central_range", "energy_score", "fit_guard", "Guard",
           "roughness", "load_guard", "max_softmax", "model_logits", "threshold_keeping", "training_index", "TrainingIndex",
           "TrainingMatch", "Verdict", "analyse", "Analysis", "grad_cam_map", "one_thread", "predict_probabilities", "prepare",
           "figure_png", "overlay_figure", "probability_figure", "result_figure", "show_figure",
           "answer_status", "DISCLAIMER", "MODEL_NAMES", "PREFERRED", "available_models", "build_app", "ClassifierApp",
           "GUARD_VAL_PER_CLASS", "GuardShelf", "ModelShelf", "notices_html", "probability_table", "STATUS_COLOURS", "APP_TAG", "LESSON", "PAGE_TITLE", "WEBSOCKET_MAX_BYTES", "app_notebook",
           "voila_command", "write_app_notebook"]
