"""flame_jupyter: run notebook code on Flame."""

from __future__ import annotations

__version__ = "0.1.0"
