"""Datasets: one adapter per published layout, and the on-disk feature cache."""

from .adapters import ADAPTERS
from .cache import FeatureCache, load_cache, prepare

__all__ = ["ADAPTERS", "FeatureCache", "load_cache", "prepare"]
