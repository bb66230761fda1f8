"""The manifest: weights_manifest.yaml parsed into frozen dataclasses."""
