"""The dataset: where it comes from, how it is decoded and cached, split and served.

Modules, in the order data flows through them:

* ``source``: the manifest, finding, verifying and downloading the dataset;
* ``images``: decoding one image (grayscale, square, resized);
* ``cache``: the decoded dataset as one tensor per resolution (``ImageSet``, ``load_images``);
* ``splits``: the stratified and the grouped train / validation / test splits;
* ``loaders``: PyTorch datasets, batch augmentation and reproducible loaders;
* ``pipeline``: one call that gives a lesson its loaders and normalisation statistics;
* ``audit`` and ``grouping``: near-duplicates across splits, and the grouped split.

The most used names are importable from ``course_utils.data`` itself.
"""

from .source import (CLASSES, DATA_ENV, GITHUB_MIRROR, HOW_TO_GET_IT, KAGGLE_HANDLE, MANIFEST_PATH, SOURCES,
                     SPLITS, cache_dir, data_home, DataDirError, DatasetIncompleteError,
                     DatasetNotFoundError, download_dataset, DownloadLimits, get_dataset, locate_dataset,
                     manifest_digest, ManifestEntry, read_manifest, repair_advice, sha256_of, verify_dataset,
                     write_manifest)
from .images import (DECODE_ERRORS, MAX_SQUARE_PIXELS, FileInfo, ImageLoadError, decode_grayscale, load_image,
                     model_pixels, scan_files, square_resize, to_grayscale)
from .cache import CACHE_KEYS, CACHE_VERSION, build_cache, cache_path, ImageSet, load_images
from .splits import (GROUPED_SPLIT_PATH, grouped_split_groups, load_grouped_split, load_splits,
                     read_grouped_split, stratified_split)
from .loaders import BatchAugmentation, make_loader, MRIDataset, train_augmentation
from .pipeline import LessonData, load_data, pixel_stats, serve, subset

__all__ = ["CLASSES", "DATA_ENV", "GITHUB_MIRROR", "HOW_TO_GET_IT", "KAGGLE_HANDLE", "MANIFEST_PATH",
           "SOURCES", "SPLITS", "cache_dir", "data_home", "DataDirError", "DatasetIncompleteError",
           "DatasetNotFoundError", "download_dataset", "DownloadLimits", "get_dataset", "locate_dataset",
           "manifest_digest", "ManifestEntry", "read_manifest", "repair_advice", "sha256_of",
           "verify_dataset", "write_manifest", "DECODE_ERRORS", "MAX_SQUARE_PIXELS", "FileInfo",
           "ImageLoadError", "decode_grayscale", "load_image", "model_pixels", "scan_files", "square_resize",
           "to_grayscale", "CACHE_KEYS", "CACHE_VERSION", "build_cache", "cache_path", "ImageSet",
           "load_images", "GROUPED_SPLIT_PATH", "grouped_split_groups", "load_grouped_split", "load_splits",
           "read_grouped_split", "stratified_split", "BatchAugmentation", "make_loader", "MRIDataset",
           "train_augmentation",
           "LessonData", "load_data", "pixel_stats", "serve", "subset"]
