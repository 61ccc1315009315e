"""The streaming server (`cospeech serve`) and its browser viewer; the wire format is in `protocol`."""

from .app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
