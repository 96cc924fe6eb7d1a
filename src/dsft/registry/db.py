"""Engine, sessions and migrations.

`DSFT_DATABASE_URL` picks the database; unset, it is SQLite at `DSFT_HOME/dsft.db` in WAL mode
(readers never block the writer; one writer at a time, waiting up to 30 s for the lock).
PostgreSQL URLs (`postgresql://...`) use psycopg 3. The schema is created and upgraded by
Alembic (`migrations/`), never by `create_all`, so a database made by an older dsft is upgraded
in place.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from dsft.errors import UserError
from dsft.home import dsft_home

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def database_url() -> str:
    url = os.environ.get("DSFT_DATABASE_URL")
    if not url:
        return f"sqlite:///{dsft_home() / 'dsft.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def engine(url: str | None = None) -> Engine:
    """One migrated engine per URL and process."""
    url = url or database_url()
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            eng = _make(url)
            migrate(eng)
            _engines[url] = eng
    return eng


def _make(url: str) -> Engine:
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _pragmas(conn, _record) -> None:
            conn.isolation_level = None  # pysqlite's own implicit BEGIN off: "begin" below does it
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(eng, "begin")
        def _immediate(conn) -> None:
            # Take the write lock at BEGIN: SQLite's one writer at a time, queued by busy_timeout,
            # and no transaction that read first can fail to upgrade its lock later.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return eng
    try:
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    except Exception as e:  # noqa: BLE001 - a bad URL is a user error, whatever the driver raises
        raise UserError(f"cannot use DSFT_DATABASE_URL: {e}",
                        "give sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from None


def migrate(eng: Engine) -> None:
    """Upgrade the schema to the newest migration (idempotent; safe with several processes)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with eng.begin() as conn:
        if conn.dialect.name == "postgresql":  # several workers may start at once: one migrates
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot prepare the database at {eng.url.render_as_string(hide_password=True)}: "
                            f"{str(e).splitlines()[0]}", "check DSFT_DATABASE_URL and that the server runs") from None


def sessions(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine(url), expire_on_commit=False)


@contextmanager
def session(url: str | None = None):
    """A session in one transaction: committed on success, rolled back on error."""
    with sessions(url)() as s, s.begin():
        yield s


def dispose() -> None:
    """Close every pooled connection (after fork, or at the end of tests)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()
