"""Analyses of the transfer matrix: latent traits (PCA) and paired bootstrap intervals."""

from .bootstrap import paired_bootstrap
from .traits import LatentTraits

__all__ = ["LatentTraits", "paired_bootstrap"]
