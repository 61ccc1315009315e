"""Datasets: one adapter per published layout, and the on-disk feature cache."""

from . import beat2, folder, show

ADAPTERS = {m.NAME: m for m in (beat2, show, folder)}

from .cache import FeatureCache, load_cache, prepare  # noqa: E402  (needs ADAPTERS)

__all__ = ["ADAPTERS", "FeatureCache", "load_cache", "prepare"]
