"""The facts an upgrade must keep, read the same way before and after it.

Before: straight from the tables of the loaded dump, with SQL (in the test,
test_upgrade_from_7ff7319.py, which knows the dump's table names). After: through today's
models, with the ORM (`print_after`, in a subprocess on the migrated database:
`manage.py shell -c "from tests.upgrade.facts import print_after; print_after()"`). Both
sides read the same COLUMNS and reduce their rows with the same `reduce`, so they compare as
equal JSON.

When a model moves to another app, only MODELS changes: the restructuring keeps table names.
"""

import hashlib
import json
from datetime import UTC, date, datetime

# Fact -> (app_label, model) in today's code. The one place to edit when models move.
MODELS = {
    "wallets": ("billing", "Wallet"),
    "api_keys": ("keys", "ApiKey"),
    "prompt_logs": ("history", "PromptLog"),
    "usage_records": ("usage", "UsageRecord"),
    "usage_daily": ("usage", "UsageDaily"),
    "usage_hourly": ("usage", "UsageHourly"),
    "ledger": ("billing", "LedgerEntry"),
    "resource_packs": ("billing", "ResourcePack"),
    "pack_consumptions": ("billing", "PackConsumption"),
    "account_month_spend": ("billing", "AccountMonthSpend"),
    "project_month_spend": ("billing", "ProjectMonthSpend"),
}

_ROLLUP = [
    "requests",
    "refused",
    "upstream_errors",
    "input_tokens",
    "output_tokens",
    "pack_tokens",
    "fee_nano",
    "recharge_nano",
    "bonus_nano",
    "arrears_nano",
]

# Fact -> the columns read (column names, which are also the models' attnames).
COLUMNS = {
    "wallets": ["account_id", "recharge_nano", "bonus_nano", "arrears_nano"],
    "api_keys": [
        "id",
        "account_id",
        "project_id",
        "key_id",
        "last4",
        "label",
        "scope",
        "environment",
        "pepper_version",
        "secret_hash",
        "created_at",
        "expires_at",
        "revoked_at",
        "replaced_by_id",
    ],
    "prompt_logs": [
        "id",
        "account_id",
        "project_id",
        "api_key_id",
        "request_id",
        "model",
        "messages",
        "parameters",
        "response_text",
        "status",
        "input_tokens",
        "output_tokens",
        "created_at",
    ],
    "usage_records": [
        "id",
        "account_id",
        "project_id",
        "api_key_id",
        "request_id",
        "source",
        "model",
        "stream",
        "status",
        "code",
        "input_tokens",
        "output_tokens",
        "pack_tokens",
        "input_price_nano",
        "output_price_nano",
        "fee_nano",
        "recharge_nano",
        "bonus_nano",
        "arrears_nano",
        "created_at",
    ],
    "usage_daily": ["account_id", "day", *_ROLLUP],
    "usage_hourly": ["account_id", "hour", *_ROLLUP],
    "ledger": [
        "account_id",
        "kind",
        "recharge_delta_nano",
        "bonus_delta_nano",
        "arrears_delta_nano",
        "fee_nano",
        "input_tokens",
        "output_tokens",
    ],
    "resource_packs": [
        "id",
        "account_id",
        "source",
        "model",
        "tokens_total",
        "tokens_remaining",
        "expires_at",
        "closed_at",
    ],
    "pack_consumptions": ["id", "entry_id", "pack_id", "input_tokens", "output_tokens"],
    "account_month_spend": ["account_id", "month", "spent_nano"],
    "project_month_spend": ["account_id", "project_id", "month", "spent_nano"],
}


def _plain(value):
    """A value as JSON has it: instants in UTC, days as ISO dates."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sums(groups: dict, key: str, values: list) -> None:
    total = groups.setdefault(key, [0] * (len(values) + 1))
    total[0] += 1  # rows
    for index, value in enumerate(values, start=1):
        total[index] += value


def reduce(fact: str, rows) -> dict:
    """One fact's rows (tuples in COLUMNS[fact] order) as a JSON-able dict with string keys."""
    columns = COLUMNS[fact]
    records = [dict(zip(columns, map(_plain, row), strict=True)) for row in rows]
    result: dict = {}
    if fact == "wallets":
        for r in records:
            result[str(r.pop("account_id"))] = r
    elif fact == "api_keys":
        for r in records:
            # Only a digest of the hash: equal hashes mean the keys still authenticate.
            r["secret_hash"] = _digest(r["secret_hash"])
            r["revoked"] = r["revoked_at"] is not None
            result[str(r.pop("id"))] = r
    elif fact == "prompt_logs":
        per_account: dict = {}
        rows_by_id = {}
        for r in records:
            per_account[str(r["account_id"])] = per_account.get(str(r["account_id"]), 0) + 1
            rows_by_id[str(r.pop("id"))] = _digest(r)
        result = {"rows per account": per_account, "row digests": rows_by_id}
    elif fact in ("usage_records", "resource_packs", "pack_consumptions"):
        for r in records:
            result[str(r.pop("id"))] = r
    elif fact in ("usage_daily", "usage_hourly"):
        bucket = "day" if fact == "usage_daily" else "hour"
        for r in records:
            _sums(result, f"account {r['account_id']} {r[bucket]}", [r[c] for c in _ROLLUP])
        result = {
            key: dict(zip(["rows", *_ROLLUP], total, strict=True)) for key, total in result.items()
        }
    elif fact == "ledger":
        sums = columns[2:]
        for r in records:
            _sums(result, f"account {r['account_id']}", [r[c] for c in sums])
            _sums(result, f"account {r['account_id']} {r['kind']}", [r[c] for c in sums])
        result = {
            key: dict(zip(["entries", *sums], total, strict=True)) for key, total in result.items()
        }
    elif fact == "account_month_spend":
        for r in records:
            result[f"account {r['account_id']} {r['month']}"] = r["spent_nano"]
    elif fact == "project_month_spend":
        for r in records:
            key = f"account {r['account_id']} project {r['project_id']} {r['month']}"
            result[key] = r["spent_nano"]
    else:
        raise KeyError(fact)
    # Through JSON, as the subprocess's side arrives.
    return json.loads(json.dumps(result, sort_keys=True))


def after() -> dict:
    """Every fact through today's models (Django set up on the migrated database)."""
    import django
    from django.apps import apps

    django.setup()  # already done under `manage.py shell`; harmless then
    facts = {}
    for fact, (app_label, model_name) in MODELS.items():
        model = apps.get_model(app_label, model_name)
        # The base manager: no default manager's filter may hide a row.
        rows = model._base_manager.values_list(*COLUMNS[fact])
        facts[fact] = reduce(fact, rows)
    return facts


def print_after() -> None:
    print(json.dumps(after(), sort_keys=True))
