"""calico-felix entry point."""

from __future__ import annotations

from calico.felix.daemon import main

__all__ = ["main"]
