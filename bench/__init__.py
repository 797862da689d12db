"""Benchmarks of the product, each a ratio against a baseline measured in the same run.

Run them with ``python -m bench.run`` (``--quick`` for the small CI pass); see ``bench.run``.
"""

from __future__ import annotations

__all__: list[str] = []
