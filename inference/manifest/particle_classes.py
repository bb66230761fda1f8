"""The particle classes of a multi-class picking task, and the CZII competition's six.

A :class:`ParticleClass` is one entry of a ``task: particles`` manifest's ``classes:`` list (its
order is the submission's). :data:`CZII_CLASSES` holds the CZII CryoET Object Identification
competition's classes as its metric defines them (radius in Å, weight in the final average) with
the thresholds of the 1st place's public code (czii_cryoet_mlchallenge_winning_models, TopCUP) as
defaults; beta-amylase has weight 0: it is not scored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParticleClass:
    """One particle type: ``name`` (as in the submission's ``particle_type``), ``radius_A`` (Å; the metric
    matches within 0.5 x radius), ``weight`` (in the score's weighted average) and ``threshold`` (the
    probability a pick needs, 0..1)."""

    name: str
    radius_A: float
    weight: float
    threshold: float = 0.5


CZII_CLASSES: tuple[ParticleClass, ...] = (
    ParticleClass("apo-ferritin", 60.0, 1.0, 0.16),
    ParticleClass("beta-amylase", 65.0, 0.0, 0.5),
    ParticleClass("beta-galactosidase", 90.0, 2.0, 0.25),
    ParticleClass("ribosome", 150.0, 1.0, 0.13),
    ParticleClass("thyroglobulin", 130.0, 2.0, 0.19),
    ParticleClass("virus-like-particle", 135.0, 1.0, 0.18),
)
#: The voxel spacing of the competition's tomograms (Å): level 0 of every ``denoised.zarr``.
CZII_SPACING_A = 10.012
