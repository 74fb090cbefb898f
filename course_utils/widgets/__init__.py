"""The lessons' interactive figures and plots, one module per figure, named by what it shows.

* ``decision_boundaries`` (lesson 01), ``optimizer_paths`` (03), ``initialization`` (04),
  ``dropout`` (05), ``convolution`` (07), ``scaling`` (11), ``gradcam_explorer`` (12),
  ``duplicates`` and ``calibration_viz`` (13), ``pruning_explorer`` (14);
* ``plots``: training curves, confusion matrices, image grids, feature maps;
* ``live``: ``live_controls``, the sliders of every slider section (off in unattended runs).
"""
