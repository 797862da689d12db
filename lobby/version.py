"""The lobby's version, read once from the installed package metadata (``pyproject.toml``).

``SERVER_VERSION`` is what ``python -m lobby --version``, ``/api/status``, the
OpenAPI document and the ``shards_lobby_process_info`` metric report. Written in
``pyproject.toml`` only; a source tree that is not installed reports
``0+unknown``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from protocol.version import DISTRIBUTION

__all__ = ["SERVER_VERSION"]


def _installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


SERVER_VERSION = _installed_version()
