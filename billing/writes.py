"""Several writes in one round trip, for the settlement's hot section.

A charge on one account waits for the previous one's wallet lock, so the account's
throughput is one over the time that lock (and the month counter and roll-up rows written
beside it) is held until commit. Each round trip under the lock adds to that time, so the
writes a charge makes once its amounts are known go to the database together: on
PostgreSQL as one statement of data-modifying CTEs, elsewhere (SQLite, where a write
transaction holds the whole database anyway) as the same statements one after another.

The first write may be a *gate* (an INSERT ... ON CONFLICT DO NOTHING RETURNING id): the
writes marked `gated` happen only when it inserted its row. Their SQL says where with two
placeholders: `{exists}` (a condition, true when the gate inserted) and `{gate_id}` (the id
the gate returned).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.db import connection


@dataclass(frozen=True)
class Write:
    name: str  # unique in the batch: the CTE's name on PostgreSQL
    sql: str  # one INSERT or UPDATE, without RETURNING
    params: list
    returning: str = ""  # a column to return (the first row's), or nothing
    gated: bool = False
    then: Callable[[object], None] | None = None  # given the value returned


@functools.cache
def insert_sql(model, *, on_conflict: str = "", gated: bool = False) -> tuple[str, tuple]:
    """INSERT of one row of `model` (every concrete column but the primary key), built once:
    compiling the ORM's INSERT costs more than running it. Returns (sql, fields)."""
    quote = connection.ops.quote_name
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    source = f"SELECT {placeholders} WHERE {{exists}}" if gated else f"VALUES ({placeholders})"
    table = quote(model._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) {source}"
    return (f"{sql} {on_conflict}" if on_conflict else sql), fields


def insert_write(
    instance, *, name: str, on_conflict: str = "", gated: bool = False, returning: str = "id"
) -> Write:
    """A Write inserting `instance` (unsaved), its values adapted as the ORM would."""
    sql, fields = insert_sql(type(instance), on_conflict=on_conflict, gated=gated)
    params = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]

    def saved(pk) -> None:
        if pk is not None:  # as the ORM's save() leaves it
            instance.pk = pk
            instance._state.adding = False
            instance._state.db = connection.alias

    return Write(name, sql, params, returning=returning, gated=gated, then=saved)


# Django turns psycopg's automatic preparation off (prepare_threshold None) for the sake of
# transaction-mode poolers; the ORM's client-side binding cursors never prepare anyway. With
# a threshold no count reaches, only what asks (the cursor below) is prepared. These are
# protocol-level prepared statements, which PgBouncer carries from 1.21 on
# (max_prepared_statements); an older transaction-mode pooler would break them.
_ONLY_WHEN_ASKED = 2**31 - 1


class _PreparedCursor(psycopg.Cursor):
    """A server-side binding cursor whose every statement is prepared (once per connection,
    by psycopg): planning the batch's CTE took about a quarter of a millisecond, all of it
    under the account's locks. Only our own fixed statements go through it."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=True)


def cursor():
    """A cursor for the settlement's own statements, through Django's wrapper (so
    `execute_wrapper` and query logging still see them); prepared on PostgreSQL."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    return connection._prepare_cursor(_PreparedCursor(raw))


def run(writes: list[Write]) -> dict[str, object]:
    """Run `writes` in the current transaction; {name: value returned} for those returning
    (None where nothing was returned, including a gate that did not insert)."""
    if connection.vendor == "postgresql":
        returned = _run_as_one_statement(writes)
    else:
        returned = _run_one_by_one(writes)
    for write in writes:
        if write.then is not None:
            write.then(returned.get(write.name))
    return returned


def _run_as_one_statement(writes: list[Write]) -> dict[str, object]:
    gate = writes[0].name
    # Names and SQL are the code's own, never input: the values travel as parameters.
    exists = f"EXISTS (SELECT 1 FROM {gate})"  # noqa: S608
    gate_id = f"(SELECT id FROM {gate})"  # noqa: S608
    parts, params = [], []
    for write in writes:
        sql = write.sql.format(exists=exists, gate_id=gate_id) if write.gated else write.sql
        if write.returning:
            sql += f" RETURNING {write.returning}"
        parts.append(f"{write.name} AS ({sql})")
        params.extend(write.params)
    returned = [write for write in writes if write.returning]
    # Every data-modifying CTE runs to completion whether or not the main query reads it.
    main = ", ".join(f"(SELECT {w.returning} FROM {w.name})" for w in returned) or "1"  # noqa: S608
    with cursor() as prepared:
        prepared.execute(f"WITH {', '.join(parts)} SELECT {main}", params)
        row = prepared.fetchone()
    return {write.name: value for write, value in zip(returned, row, strict=False)}


def _run_one_by_one(writes: list[Write]) -> dict[str, object]:
    results: dict[str, object] = {}
    gate_id = None
    with connection.cursor() as cursor:
        for index, write in enumerate(writes):
            sql = write.sql
            if write.gated:
                if gate_id is None:
                    continue  # the gate inserted nothing
                sql = sql.format(exists="1 = 1", gate_id=int(gate_id))
            if write.returning:
                cursor.execute(f"{sql} RETURNING {write.returning}", write.params)
                row = cursor.fetchone()
                results[write.name] = row[0] if row else None
                if index == 0:
                    gate_id = results[write.name]
            else:
                cursor.execute(sql, write.params)
    return results
