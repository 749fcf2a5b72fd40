"""Every row of an account, field by field: what a stranger's request (or a refused one) must
leave exactly as it was. Shared by the isolation matrix and the hostile-input tests."""

from django.apps import apps

from console.models import Account


def account_rows(account) -> dict:
    """Every row of every table with an `account` column, and the account's own row."""
    rows = {("console.Account", account.pk): _fields(Account.objects.get(pk=account.pk))}
    for model in apps.get_models():
        field = next(
            (f for f in model._meta.concrete_fields if f.name == "account" and f.is_relation),
            None,
        )
        if field is None:
            continue
        for row in model._default_manager.filter(account=account).order_by("pk"):
            rows[(model._meta.label, row.pk)] = _fields(row)
    return rows


def _fields(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


def rows_changed(before: dict, after: dict) -> list[str]:
    """What differs between two `account_rows`, one line per row."""
    changes = [f"added {key}" for key in after.keys() - before.keys()]
    changes += [f"removed {key}" for key in before.keys() - after.keys()]
    for key in before.keys() & after.keys():
        changed = [name for name in before[key] if before[key][name] != after[key][name]]
        if changed:
            changes.append(f"changed {key}: {changed}")
    return sorted(changes)
