"""How long a caller waits for a database connection."""

from django.db import connection


def connect_within(seconds: float) -> None:
    """Have this thread's database connection within `seconds`, or raise OperationalError
    (Django's, so callers handle it as any database failure).

    The pool's own wait (DATABASE_POOL_TIMEOUT) suits pages and jobs; the API sheds load
    faster while PostgreSQL is unreachable. psycopg's pool takes a wait per call but Django's
    connection does not pass one, so a connection is taken within `seconds` and handed
    straight back, for Django to take at once: an idle connection changes hands twice in the
    pool, no round trip to the server. No pool (SQLite) or a connection already open: nothing
    to wait for."""
    pool = getattr(connection, "pool", None)
    if pool is None or connection.connection is not None:
        return
    with connection.wrap_database_errors:
        pool.open()
        pool.putconn(pool.getconn(timeout=seconds))
