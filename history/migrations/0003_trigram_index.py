"""pg_trgm and a GIN trigram index for substring search in any language, on PostgreSQL only
(SQLite, the embedded default, scans within the account and date range instead).

The index is on UPPER(search_text::text): the expression Django's icontains produces, so
the planner can use it. pg_trgm is a trusted extension: the database owner may create it.
"""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS prompt_search_trgm_idx ON history_promptlog "
        "USING gin ((UPPER(search_text::text)) gin_trgm_ops)"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS prompt_search_trgm_idx")


class Migration(migrations.Migration):
    dependencies = [("history", "0002_search")]

    operations = [migrations.RunPython(create, drop)]
