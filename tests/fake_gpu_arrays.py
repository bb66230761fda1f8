"""NumPy-backed stand-ins for CuPy arrays, ``cupyx.scipy.ndimage`` and cuCIM: GPU array code runs anywhere.

``FakeGpu()`` builds the modules; ``fake.install(monkeypatch, cucim=True)`` puts them in ``sys.modules``
(``cucim=False``: cuCIM absent, its imports fail). What they check and record, like the real libraries:

* device arrays (``fake.cupy.ndarray``) are NumPy arrays of a subclass that refuses NumPy *functions*
  (``np.flatnonzero(device)`` raises, as NumPy does on a CuPy array); operators, indexing and methods
  work, as on CuPy. ``fake.cupy.<name>`` runs NumPy's function on the host data and returns device arrays;
* every device -> host copy (``.get()``, ``cupy.asnumpy``) is recorded in ``fake.transfers`` (bytes);
* ``cupyx.scipy.ndimage`` and cuCIM functions take device arrays only (TypeError otherwise) and run
  SciPy / scikit-image; ``label`` numbers the components in a shuffled order (a GPU union-find gives
  no raster order).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import scipy.ndimage
import skimage.measure


class FakeGpu:
    def __init__(self, seed: int = 0):
        self.transfers: list[int] = []
        self.calls: list[str] = []
        self._rng = np.random.default_rng(seed)
        fake = self

        class DeviceArray(np.ndarray):
            def get(self):
                fake.transfers.append(int(self.nbytes))
                return np.array(self.view(np.ndarray), copy=True)

            def __array_function__(self, func, types_, args, kwargs):
                raise TypeError(f"numpy.{func.__name__} on a (fake) CuPy array: use the array module or .get()")

        self.DeviceArray = DeviceArray
        self.cupy = self._cupy()
        self.ndi = self._ndimage()
        self.measure, self.morphology = self._cucim()

    # -- arrays ------------------------------------------------------------------------------
    def host(self, x):
        """The host data of device arrays in ``x`` (recursively in lists, tuples)."""
        if isinstance(x, self.DeviceArray):
            return x.view(np.ndarray)
        if isinstance(x, (list, tuple)):
            return type(x)(self.host(v) for v in x)
        return x

    def device(self, x):
        if isinstance(x, np.ndarray) and not isinstance(x, self.DeviceArray):
            return x.view(self.DeviceArray)
        if isinstance(x, tuple):
            return tuple(self.device(v) for v in x)
        return x

    def _on_device(self, name, *arrays):
        for a in arrays:
            if not isinstance(a, self.DeviceArray):
                raise TypeError(f"{name}: expected a (fake) CuPy array, got {type(a).__name__}")
        self.calls.append(name)

    def _cupy(self):
        fake = self

        class Module(types.ModuleType):
            def __getattr__(self, name):
                obj = getattr(np, name)
                if callable(obj) and not isinstance(obj, type):
                    def call(*args, **kwargs):
                        out = obj(*fake.host(args), **{k: fake.host(v) for k, v in kwargs.items()})
                        return fake.device(out)
                    return call
                return obj

        cp = Module("cupy")
        cp.__version__ = "fake"
        cp.ndarray = self.DeviceArray

        def asarray(x, dtype=None):
            if isinstance(x, self.DeviceArray):
                return x if dtype is None or np.dtype(dtype) == x.dtype else x.astype(dtype)
            return np.array(x, dtype=dtype, copy=True).view(self.DeviceArray)  # host -> device

        def asnumpy(x):
            return x.get() if isinstance(x, self.DeviceArray) else np.asarray(x)

        cp.asarray, cp.asnumpy = asarray, asnumpy
        return cp

    # -- cupyx.scipy.ndimage --------------------------------------------------------------
    def _shuffled(self, labels: np.ndarray, n: int) -> np.ndarray:
        perm = np.concatenate([[0], 1 + self._rng.permutation(n)]).astype(labels.dtype)
        return perm[labels]

    def _ndimage(self):
        fake = self
        ndi = types.ModuleType("cupyx.scipy.ndimage")

        def maximum_filter(input, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0):
            fake._on_device("maximum_filter", input)
            return fake.device(scipy.ndimage.maximum_filter(fake.host(input), size=size, footprint=fake.host(footprint),
                                                            mode=mode, cval=cval, origin=origin))

        def label(input, structure=None, output=None):
            fake._on_device("label", input)
            if structure is not None:
                fake._on_device("label structure", structure)
            labels, n = scipy.ndimage.label(fake.host(input), structure=fake.host(structure))
            return fake.device(fake._shuffled(labels.astype(np.int32), n)), n

        ndi.maximum_filter, ndi.label = maximum_filter, label
        ndi.distance_transform_edt = self._edt("distance_transform_edt")
        return ndi

    # -- cuCIM ----------------------------------------------------------------------------
    def _cucim(self):
        fake = self
        measure = types.ModuleType("cucim.skimage.measure")
        morphology = types.ModuleType("cucim.core.operations.morphology")

        def label(input, background=None, return_num=False, connectivity=None):
            fake._on_device("cucim label", input)
            labels, n = skimage.measure.label(fake.host(input), background=background, return_num=True,
                                              connectivity=connectivity)
            labels = fake.device(fake._shuffled(labels.astype(np.int32), n))
            return (labels, n) if return_num else labels

        measure.label, morphology.distance_transform_edt = label, self._edt("cucim distance_transform_edt")
        return measure, morphology

    def _edt(self, name: str):
        """A stand-in of cupyx's / cuCIM's ``distance_transform_edt`` (the same signature), recorded as ``name``."""
        fake = self

        def distance_transform_edt(image, sampling=None, return_distances=True, return_indices=False,
                                   distances=None, indices=None, *, block_params=None, float64_distances=True):
            fake._on_device(name, image)
            out = scipy.ndimage.distance_transform_edt(fake.host(image), sampling=sampling)
            return fake.device(out if float64_distances else out.astype(np.float32))

        return distance_transform_edt

    # -- sys.modules ----------------------------------------------------------------------
    def modules(self, cucim: bool = True) -> dict:
        cupyx, scipy_ = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
        cupyx.scipy, scipy_.ndimage = scipy_, self.ndi
        mods = {"cupy": self.cupy, "cupyx": cupyx, "cupyx.scipy": scipy_, "cupyx.scipy.ndimage": self.ndi}
        names = ("cucim", "cucim.skimage", "cucim.skimage.measure", "cucim.core", "cucim.core.operations",
                 "cucim.core.operations.morphology")
        if cucim:
            root, sk, core, ops = (types.ModuleType(n) for n in names[:2] + names[3:5])
            root.skimage, root.core, sk.measure, core.operations, ops.morphology = sk, core, self.measure, ops, \
                self.morphology
            mods.update(zip(names, (root, sk, self.measure, core, ops, self.morphology)))
        else:
            mods.update(dict.fromkeys(names))  # None in sys.modules: the import raises ImportError
        return mods

    def install(self, monkeypatch, cucim: bool = True) -> "FakeGpu":
        for name, module in self.modules(cucim).items():
            monkeypatch.setitem(sys.modules, name, module)
        return self
