"""The Kaggle submission builder: a dataset + an offline notebook, checked locally before upload.

``build_submission.py`` (repo root) is the command line; each concern has its own module:

* ``target``: one frozen ``Target`` per competition (``byu``: BYU motors, the default; ``czii``: CZII
  particles): slug, task, test input, limits, the median tomogram, default ids; and Kaggle's formats.
* ``config``: :class:`BuildConfig` and its checks (ids, titles, license, budget, the manifest's task).
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
* ``submission_check``: the submission's check and repair per task (standard library only).
* ``image_env``: a Python environment that holds only the image's packages (the dry run installs into it).
* ``dry_run``: execute the notebook locally in a simulated Kaggle tree, exactly as Kaggle would;
  ``simulated_test``: that tree's synthetic test set per target, and the verdict on the submission.
* ``cost``, ``profile``, ``profile_render``, ``profile_run``: windows, FLOPs, measured stages, projection
  against the target's limit; ``profile_run`` measures and writes the table and plot.
* ``demo``: the whole mission on synthetic data (``python build_submission.py --demo [--target czii]``);
  ``demo_predict``: its first half per task (data, demo detectors, predict, score).

Dependencies point one way: ``build_submission.py`` -> here -> :mod:`inference`; importing this
package (or :mod:`runtime`) imports nothing heavy.
"""
