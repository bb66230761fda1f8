"""Heatmaps and probability maps to points: local maxima, distance NMS, components, watershed (cells -> voxels, Å)."""
