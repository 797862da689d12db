"""``python -m lobby db ...``: migrate the lobby's database separately from starting it.

::

    python -m lobby db upgrade  [--database-url URL | --data-dir DIR] [--revision REV]
    python -m lobby db current  [--database-url URL | --data-dir DIR] [--check]
    python -m lobby db revision -m "what changes" [--rev-id NNNN] [--into DIR]

The database is the one the lobby would open: ``--database-url``, else
``SHARDS_DATABASE_URL``, else SQLite in the data directory (``--data-dir``,
``SHARDS_DATA_DIR``). A lobby still migrates on start; ``db upgrade`` lets an
operator do it first (one job before rolling out several lobbies), ``db
current`` prints the revision the database is at (``--check``: exit 1 unless
it is at the newest). ``db revision`` is for developers: it autogenerates a new
revision in the package from the difference between the table objects and the
newest revision (on a scratch SQLite file), to be read and completed by hand.

Exit status: 0 done, 1 the database failed (unreachable, refused, migration
failed), 2 a usage or configuration error. Messages go to stderr, results to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from lobby.config import LobbySettings
from lobby.storage import legacy
from lobby.storage.engine import Database, build_engine, normalize_url
from lobby.storage.migrations import (
    SCRIPT_LOCATION,
    VERSION_LOCATIONS,
    alembic_config,
    current,
    heads,
)
from protocol.errors import ConfigError, StorageError

__all__ = ["main"]


class _UsageError(Exception):
    """A bad command line or setting: exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lobby db", description="Migrate the lobby's database."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--database-url", help="sqlite:///file or postgresql://... URL")
    where.add_argument("--data-dir", type=Path, help="data directory (default ./shards-data)")
    up = sub.add_parser("upgrade", parents=[where], help="apply pending revisions")
    up.add_argument("--revision", default="heads", help="target revision (default: the newest)")
    cur = sub.add_parser("current", parents=[where], help="print the database's revision")
    cur.add_argument("--check", action="store_true", help="exit 1 unless at the newest revision")
    rev = sub.add_parser("revision", help="autogenerate a new revision (developers)")
    rev.add_argument("-m", "--message", required=True, help="what the revision changes")
    rev.add_argument("--rev-id", help="its id (default: the next number)")
    rev.add_argument(
        "--into", type=Path, help="directory to write it to (default: the lobby's versions/)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``db`` command ``argv`` (without the leading ``db``); return the exit status."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse: 2 after a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "revision":
            return _revision(args.message, args.rev_id, args.into)
        url = _database_url(args.database_url, args.data_dir)
        if args.command == "upgrade":
            return asyncio.run(_upgrade(url, args.revision))
        return asyncio.run(_current(url, check=args.check))
    except _UsageError as exc:
        print(f"lobby db: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"lobby db: {exc.message}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"lobby db: {exc.message}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError, CommandError) as exc:
        print(f"lobby db: {exc}", file=sys.stderr)
        return 1


def _database_url(url: str | None, data_dir: Path | None) -> str:
    overrides: dict[str, object] = {}
    if url is not None:
        overrides["database_url"] = url
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        resolved = LobbySettings(**overrides).resolved_database_url  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _UsageError(f"invalid setting: {exc}") from None
    normalize_url(resolved)  # a ConfigError for a bad one
    return resolved


async def _upgrade(url: str, target: str) -> int:
    db = Database(build_engine(url))
    try:
        result = await db.migrate(target)
    finally:
        await db.close()
    if result.converted:
        print(
            "converted the database of the old migration runner "
            f"(steps run: {', '.join(map(str, result.legacy_steps)) or 'none'})"
        )
    state = "upgraded" if result.before != result.after else "already"
    print(f"{state} at revision {_describe(result.after)}")
    return 0


async def _current(url: str, *, check: bool) -> int:
    _check_exists(url)
    engine = build_engine(url)
    try:
        async with engine.connect() as conn:
            revisions, old = await conn.run_sync(_inspect)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open the database: {exc}") from exc
    finally:
        await engine.dispose()
    newest = heads()
    if old:
        print("made by the old migration runner: `python -m lobby db upgrade` converts it")
    elif not revisions:
        print("empty (no revision): `python -m lobby db upgrade` creates the schema")
    else:
        print(_describe(revisions))
    if set(revisions) - set(_known()):
        print(f"unknown to this lobby (newest known: {', '.join(newest)})", file=sys.stderr)
        return 1
    return 1 if check and revisions != newest else 0


def _check_exists(url: str) -> None:
    """A SQLite file that is not there: an error rather than a new empty file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        raise StorageError(f"no database at {parsed.database}")


def _inspect(conn: Connection) -> tuple[tuple[str, ...], bool]:
    revisions = current(conn)
    return revisions, not revisions and legacy.is_legacy(conn)


def _describe(revisions: tuple[str, ...]) -> str:
    newest = heads()
    known = set(_known())
    text = ", ".join(revisions) or "none"
    if revisions == newest:
        return f"{text} (newest)"
    if set(revisions) <= known:
        return f"{text} (behind: newest is {', '.join(newest)})"
    return text


def _known() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in script.walk_revisions()]


def _revision(message: str, rev_id: str | None, into: Path | None) -> int:
    versions = SCRIPT_LOCATION / "versions" if into is None else into
    if not versions.is_dir():
        raise _UsageError(f"no directory {versions}")
    if versions.resolve() not in {p.resolve() for p in VERSION_LOCATIONS}:
        VERSION_LOCATIONS.append(versions)  # this process only: Alembic writes only into one
    if rev_id is None:
        numbers = [int(r) for r in _known() if r.isdigit()]
        rev_id = f"{max(numbers, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="lobby-revision-") as scratch:
        url = f"sqlite:///{scratch}/scratch.sqlite3"

        async def generate() -> None:
            db = Database(build_engine(url))
            try:
                await db.migrate()
                async with db.engine.connect() as conn:
                    await conn.run_sync(_autogenerate, message, rev_id, versions)
            finally:
                await db.close()

        asyncio.run(generate())
    print(f"wrote {versions}/v{rev_id}_*.py: read it, complete it, run the tests")
    return 0


def _autogenerate(conn: Connection, message: str, rev_id: str, versions: Path) -> None:
    cfg = alembic_config(conn)
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is not None:  # the new file in the project's style (ruff is a test dependency)
        cfg.set_section_option("post_write_hooks", "hooks", "ruff")
        cfg.set_section_option("post_write_hooks", "ruff.type", "exec")
        cfg.set_section_option("post_write_hooks", "ruff.executable", ruff.replace("%", "%%"))
        cfg.set_section_option(
            "post_write_hooks", "ruff.options", "format REVISION_SCRIPT_FILENAME"
        )
    command.revision(
        cfg,
        message=message,
        autogenerate=True,
        rev_id=rev_id,
        version_path=str(versions),
    )
