"""The Kaggle submission builder: a dataset + an offline notebook, checked locally before upload.

``build_submission.py`` (repo root) is the command line; each concern has its own module:

* ``target``: facts about Kaggle (competition, time limit, metadata formats, the median tomogram).
* ``config``: :class:`BuildConfig` and its checks (ids, titles, license, budget).
* ``image`` + ``kaggle_image_packages.txt``: the Kaggle GPU image's packages in our dependency closure.
* ``wheels``: what the notebook installs beyond the image, resolved and downloaded for Kaggle's
  Python (3.11, manylinux x86_64) into a cached wheelhouse.
* ``package_wheel``: this package as a pure-Python wheel, built from a source checkout.
* ``members``: the manifest's member files (and ONNX external data), TensorRT engines beside them.
* ``ownership``: folders the builder owns (a mark file); it never deletes or follows what it did not write.
* ``dataset``: the dataset folder (wheel, manifest, members, engines, wheels, metadata, build record).
* ``notebook``: the notebook, a few lines per cell calling :mod:`runtime`; every value serialized.
* ``build``: :func:`build`: check everything, stage, then replace the owned output folders.
* ``runtime``: what runs ON KAGGLE inside the notebook (find the dataset, install offline, print the
  environment, build engines, predict with the deadline, check the submission). Standard library only
  at import: the notebook imports it from the wheel file before anything is installed.
* ``image_env``: a Python environment that holds only the image's packages (the dry run installs into it).
* ``dry_run``: execute the notebook locally in a simulated Kaggle tree, exactly as Kaggle would.
* ``cost``, ``profile``, ``profile_render``, ``profile_run``: windows, FLOPs, measured stages, projection
  against 9 h; ``profile_run`` measures and writes the table and plot.
* ``demo``: the whole mission on synthetic data (``python build_submission.py --demo``).

Dependencies point one way: ``build_submission.py`` -> here -> :mod:`inference`; importing this
package (or :mod:`runtime`) imports nothing heavy.
"""
