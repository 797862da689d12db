"""The lobby's Alembic environment (``env.py``, ``script.py.mako``) and ``versions/``.

Loaded by Alembic through :func:`lobby.storage.migrations.alembic_config`, not
imported: a package only so that it ships in the wheel like the rest of the code.
"""

from __future__ import annotations

__all__: list[str] = []
