"""How the particles demo detector's head is measured: a linear discriminant on synthetic runs, then temperatures
and thresholds by the competition's metric. Run once; the result is ``inference/data/particle_demo_head.json``::

    python -c "from inference.synth.particle_demo_fit import write_head; write_head()"

1. Calibration runs: runs ``0..n-1`` of ``synth --task particles --seed CALIBRATION_SEED`` (not files: the
   same draws in memory), z-scored as the predictor does (the volume's own mean and std).
2. Features: the detector's own feature graph (:func:`inference.synth.particle_demo_model.feature_model`,
   run by ONNX Runtime), so the head sees exactly what the model computes.
3. Groups per output cell (cell ``j`` centred at level-0 voxel ``2 j + 0.5``), by its distance ``d`` to the
   nearest particle centre in units of that particle's radius: ``d < CENTRE`` its class; ``CENTRE <= d < NEAR``
   one of ``SHELLS`` shells of that class (a near group); else background.
4. Linear discriminant analysis: group means ``m_g``, pooled within-group covariance ``S``, priors ``p_g``
   (cell fractions); score ``w_g . f + b_g`` with ``w_g = S^-1 m_g``, ``b_g = -m_g . S^-1 m_g / 2 + log p_g``.
5. Per class, in class order (twice, :data:`PASSES`): the temperature of :data:`TEMPERATURES` and then the threshold of
   :data:`THRESHOLDS` (last) with the best F-beta (beta 4, the CZII metric: a prediction is a hit within half the
   radius; any-match) over the calibration runs, peaks found by local-maximum NMS (:data:`nms_kernel_cells`)
   on the softmax probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.decode.peaks import find_peaks
from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A
from inference.synth.particle_demo_model import STRIDE, ParticleHead, default_head_path, feature_model
from inference.synth.particle_project import run_streams
from inference.synth.particle_render import draw_run
from inference.synth.particle_scene import DEFAULT_SCALE, run_shape

CALIBRATION_SEED = 1000
CALIBRATION_RUNS = 20
PASSES = 2  # coordinate passes over the classes' temperatures (the softmax couples them)
SIGMAS = (0.7, 1.2, 1.8, 2.6, 3.6, 5.0)  # cells of the stride-2 grid (20 Å)
CLIP = 4.0
CENTRE, NEAR, SHELLS = 0.25, 1.6, 3
TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.025), 3))
BETA = 4.0


def nms_kernel_cells(radius_A: float) -> int:
    """Local-maximum window (cells of the stride-2 grid): ``2 int(radius / 20 Å) + 1``, the 1st place's
    validation NMS (``pp_1``: kernels 7, 7, 9, 15, 13, 13 for the six classes)."""
    return 2 * int(0.5 * radius_A / 10.0) + 1


def calibration_runs(seed: int = CALIBRATION_SEED, n: int = CALIBRATION_RUNS, scale: float = DEFAULT_SCALE):
    """Yield ``(zscored volume, centres (M, 3) level-0 voxels, classes (M,))`` of runs 0..n-1 of a project."""
    shape = run_shape(scale)
    for i in range(n):
        _, r_run = run_streams(seed, i)
        particles, vol = draw_run(r_run, shape, CZII_SPACING_A, CZII_CLASSES)
        std = float(vol.std())
        z = ((vol - vol.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
        yield z, np.array([p.zyx for p in particles]).reshape(-1, 3), np.array([p.cls for p in particles], int)


def _features(session, z: np.ndarray) -> np.ndarray:
    return session.run(None, {"input": z[None, None]})[0][0]


def _cell_groups(grid_shape, centres, classes, radii_vox) -> np.ndarray:
    """Group index per cell: 0 background, 1 + c class centre, 1 + n_cls + c * SHELLS + s near shell."""
    n_cls = len(radii_vox)
    group = np.zeros(grid_shape, np.int64)
    best = np.full(grid_shape, np.inf)
    for c, k in zip(centres, classes):
        r = radii_vox[k]
        lo = np.maximum(np.floor((c - NEAR * r - 0.5) / STRIDE).astype(int), 0)
        hi = np.minimum(np.ceil((c + NEAR * r - 0.5) / STRIDE).astype(int) + 1, grid_shape)
        idx = [np.arange(a, b) * STRIDE + 0.5 for a, b in zip(lo, hi)]
        d = np.sqrt((idx[0][:, None, None] - c[0]) ** 2 + (idx[1][None, :, None] - c[1]) ** 2
                    + (idx[2][None, None, :] - c[2]) ** 2) / r
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        near = (d < NEAR) & (d < best[sl])
        shell = np.minimum(((d - CENTRE) // ((NEAR - CENTRE) / SHELLS)).astype(int), SHELLS - 1)
        g = np.where(d < CENTRE, 1 + k, 1 + n_cls + k * SHELLS + shell)
        group[sl] = np.where(near, g, group[sl])
        best[sl] = np.where(near, d, best[sl])
    return group


def _lda(sums, outers, counts):
    """Weights (G, K) and biases (G,) of the linear discriminant from per-group sums."""
    n = counts.sum()
    means = sums / counts[:, None]
    within = (outers.sum(0) - np.einsum("g,gi,gj->ij", counts, means, means)) / n
    inv = np.linalg.inv(within)
    w = means @ inv
    b = -0.5 * np.einsum("gi,gi->g", w, means) + np.log(counts / n)
    return w, b


def _fbeta(tp, fp, fn):
    p = tp / np.maximum(tp + fp, 1)
    r = tp / np.maximum(tp + fn, 1)
    return (1 + BETA**2) * p * r / np.maximum(BETA**2 * p + r, 1e-12)


def _class_curve(k, rel, temps, runs) -> np.ndarray:
    """F-beta of class ``k`` at each of :data:`THRESHOLDS` for temperatures ``temps`` over the runs."""
    radius = CZII_CLASSES[k].radius_A
    hit_r = 0.5 * radius / CZII_SPACING_A
    tp = np.zeros(len(THRESHOLDS))
    fp = np.zeros(len(THRESHOLDS))
    fn = np.zeros(len(THRESHOLDS))
    for d, (centres, classes) in zip(rel, runs):
        logits = d / np.asarray(temps, np.float32)[:, None, None, None]
        top = np.maximum(logits.max(0), 0.0)
        denom = np.exp(-top) + np.exp(logits - top).sum(0)
        prob = (np.exp(logits[k] - top) / denom).astype(np.float32)
        idx, conf = find_peaks(prob, nms_kernel=nms_kernel_cells(radius), min_conf=THRESHOLDS[0], top_k=None)
        pts = idx * STRIDE + (STRIDE - 1) / 2.0
        gt = centres[classes == k]
        close = np.linalg.norm(gt[:, None] - pts[None], axis=-1) <= hit_r
        for i, t in enumerate(THRESHOLDS):
            keep = conf >= t
            hits = int(close[:, keep].any(axis=1).sum())
            tp[i] += hits
            fp[i] += int(keep.sum()) - hits
            fn[i] += len(gt) - hits
    return _fbeta(tp, fp, fn)


def fit_head(seed: int = CALIBRATION_SEED, n: int = CALIBRATION_RUNS, scale: float = DEFAULT_SCALE):
    """Measure the head on ``n`` calibration runs (module docstring); returns ``(ParticleHead, report)``,
    the report holding each class's calibration F-beta at its threshold."""
    import onnxruntime as ort

    session = ort.InferenceSession(feature_model(SIGMAS, CLIP).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    n_cls = len(CZII_CLASSES)
    n_groups = 1 + n_cls + n_cls * SHELLS
    radii = np.array([c.radius_A / CZII_SPACING_A for c in CZII_CLASSES])
    sums = np.zeros((n_groups, len(SIGMAS)))
    outers = np.zeros((n_groups, len(SIGMAS), len(SIGMAS)))
    counts = np.zeros(n_groups)
    feats, runs = [], []
    for z, centres, classes in calibration_runs(seed, n, scale):
        f = _features(session, z).astype(np.float64)
        group = _cell_groups(f.shape[1:], centres, classes, radii).ravel()
        flat = f.reshape(len(SIGMAS), -1).T
        counts += np.bincount(group, minlength=n_groups)
        for g in np.unique(group):
            x = flat[group == g]
            sums[g] += x.sum(0)
            outers[g] += x.T @ x
        feats.append(f.astype(np.float32))
        runs.append((centres, classes))
    if (counts == 0).any():
        raise ValueError(f"calibration left groups empty ({np.flatnonzero(counts == 0).tolist()}): use more runs")
    w, b = _lda(sums, outers, counts)
    groups = [-1] + list(range(n_cls)) + [-1] * (n_cls * SHELLS)
    bg = np.array([g < 0 for g in groups])
    rel = []
    for f in feats:
        s = np.einsum("gk,k...->g...", w, f) + b.reshape(-1, 1, 1, 1)
        top = s[bg].max(0)
        lse = top + np.log(np.exp(s[bg] - top).sum(0))
        rel.append((s[1:1 + n_cls] - lse).astype(np.float32))
    temps = [4.0] * n_cls
    for k in list(range(n_cls)) * PASSES:
        best = max(TEMPERATURES, key=lambda t: (_class_curve(k, rel, temps[:k] + [t] + temps[k + 1:], runs).max(), -t))
        temps[k] = float(best)
    thresholds, report = [], {}
    for k, cls in enumerate(CZII_CLASSES):
        curve = _class_curve(k, rel, temps, runs)
        i = int(np.argmax(curve))
        thresholds.append(float(THRESHOLDS[i]))
        report[cls.name] = round(float(curve[i]), 4)
    head = ParticleHead(sigmas=SIGMAS, clip=CLIP, groups=tuple(groups),
                        weights=tuple(tuple(round(float(v), 6) for v in row) for row in w),
                        bias=tuple(round(float(v), 6) for v in b), temperature=tuple(temps),
                        threshold=tuple(thresholds))
    return head, report


def write_head(path: str | Path | None = None, **fit_args) -> Path:
    """Fit (:func:`fit_head`) and write the head as JSON (default: the packaged file); returns the path."""
    head, report = fit_head(**fit_args)
    doc = {**head.as_json(), "fit": {"seed": fit_args.get("seed", CALIBRATION_SEED),
                                     "runs": fit_args.get("n", CALIBRATION_RUNS),
                                     "scale": fit_args.get("scale", DEFAULT_SCALE), "calibration_fbeta": report}}
    out = Path(path or default_head_path())
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out
