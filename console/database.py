"""How long a caller waits for a database connection."""

import contextlib

from django.db import DEFAULT_DB_ALIAS, connections


@contextlib.contextmanager
def connection_wait(seconds: float):
    """Inside this block, whenever this thread's database connection (re)connects, it waits at
    most `seconds` for the pool, then raises OperationalError (Django's, so callers handle it
    as any database failure).

    The pool's own wait (DATABASE_POOL_TIMEOUT) suits pages and jobs; the API sheds load
    faster while PostgreSQL is unreachable. psycopg's pool takes a wait per call but Django's
    connection does not pass one, so this thread's connection asks the pool itself for the
    length of the block. Not only the first connection: when PostgreSQL goes away mid-
    transaction Django reconnects on its own (leaving `atomic` sets autocommit again), and
    that wait too must be the short one (the restart drill saw 10 s answers before). Set on
    this thread's connection only (Django keeps one per thread). No pool (SQLite): nothing
    to wait for."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    pool = getattr(wrapper, "pool", None)
    if pool is None:
        yield
        return
    own = wrapper.__dict__
    previous = own.get("get_new_connection")

    def get_new_connection(conn_params):
        pool.open()
        return pool.getconn(timeout=seconds)

    own["get_new_connection"] = get_new_connection
    try:
        yield
    finally:
        if previous is None:
            own.pop("get_new_connection", None)
        else:
            own["get_new_connection"] = previous
