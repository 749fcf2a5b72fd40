"""Text search by character pairs under the account, on PostgreSQL only (SQLite, the embedded
default, scans within the account and date range instead).

The trigram index of 0003 spanned every account: at 1M rows the planner read its matches in
all accounts and then filtered by account and date, and 1-2 character texts (two-character
Chinese words) gave it no trigrams at all. history_search_keys(account, text) is the
account-prefixed character pairs of UPPER(text) ("7:智谱"), so one GIN posting list holds one
account's rows with that pair: a search reads only its own account's matches, for any text of
two characters or more. The selector adds `keys(row) @> keys(query)` beside icontains (a
pre-filter: icontains still decides). No extension is needed (btree_gin would have put the
account in the index too, but beside the text keys rather than inside them, so a common
account list would be intersected with every pair's list).

The function walks the text once (string_to_array splits characters, lead() pairs them):
substr() per position is quadratic on multibyte text, and bodies reach 256 KiB. The index
is built CONCURRENTLY (the migration is not atomic) so the gateway keeps writing meanwhile.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION history_search_keys(account bigint, content text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 2000 AS $$
  SELECT array(
    SELECT key FROM (
      SELECT account::text || ':' || ch || lead(ch) OVER (ORDER BY n) AS key
      FROM unnest(string_to_array(upper(content), NULL)) WITH ORDINALITY AS t(ch, n)
    ) AS pairs
    WHERE key IS NOT NULL
  )
$$
"""
# COST: about 75 µs a row (100 times a LIKE), so where the planner filters rows with it
# rather than reading the index, it evaluates icontains first and the keys only on matches.


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    # A concurrent build that failed (a deadlock, a cancelled deploy) leaves an invalid index
    # that IF NOT EXISTS would keep: drop it and build again.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT indisvalid FROM pg_index "
            "WHERE indexrelid = to_regclass('prompt_search_keys_idx')"
        )
        invalid = cursor.fetchone()
    if invalid and invalid[0]:
        schema_editor.execute("DROP INDEX CONCURRENTLY prompt_search_keys_idx")
    schema_editor.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS prompt_search_keys_idx ON history_promptlog "
        "USING gin (history_search_keys(account_id, search_text))"
    )
    # Statistics on the text as icontains compares it: the trigram index's expression gave
    # them before. Without them the planner guesses any long text rare and reads 1,000 rows
    # for a page that a common text fills from its first 150.
    schema_editor.execute(
        "CREATE STATISTICS IF NOT EXISTS prompt_search_text_stats "
        "ON (UPPER(search_text::text)) FROM history_promptlog"
    )
    # The trigram index served only the text filter, which the keys now narrow; keeping it
    # would double the GIN work of every insert and every purge's vacuum.
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS prompt_search_trgm_idx")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS prompt_search_trgm_idx ON history_promptlog "
        "USING gin ((UPPER(search_text::text)) gin_trgm_ops)"
    )
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS prompt_search_keys_idx")
    schema_editor.execute("DROP STATISTICS IF EXISTS prompt_search_text_stats")
    schema_editor.execute("DROP FUNCTION IF EXISTS history_search_keys(bigint, text)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("history", "0004_export")]

    operations = [migrations.RunPython(create, drop)]
