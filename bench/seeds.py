"""The big seeds, loaded with COPY: prompt logs for bench/history.py and usage records (with
their roll-ups) for bench/usage.py, over 20 accounts and 90 days. Run as a phase on a copy of
the migrated database; `bench.common.cached_seed` keeps the result as a template database,
fingerprinted with this file and the migrations, so a full run seeds a million rows once.

    DATABASE_URL=postgres://.../building python bench/seeds.py history <first> <last>
    DATABASE_URL=postgres://.../building python bench/seeds.py usage <first> <last>

`first` > 0 adds rows to a seed that already holds `first` of them (its accounts included).
"""

import io
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ACCOUNTS = 20
DAYS = 90
ZH = [
    "智谱AI开放平台",
    "API密钥无法使用",
    "资源包扣费顺序",
    "发票开具",
    "客服工单",
    "模型调用失败",
    "欢迎使用",
    "请帮我总结",
    "翻译成中文",
    "余额不足",
]
EN = [
    "rotate an API key",
    "explain the invoice",
    "GLM-4.7 pricing",
    "summarise this ticket",
    "translate to English",
    "why was I charged",
    "stream the answer",
    "resource pack",
]
MODELS = ["glm-4.7", "glm-4.5-air", "glm-4.7-flash", "glm-4.5"]
HISTORY_NAME = "history bench"
USAGE_NAME = "usage bench"


def _accounts(name: str, *, projects: int = 1, keys: int = 0):
    """The seed's accounts (made on the first load, found on later ones), each with its
    projects and keys."""
    from console.models import Account, Tier
    from keys.models import ApiKey
    from keys.services import api_key_create
    from portal.services import user_signup
    from projects.services import project_create

    found = list(Account.objects.filter(name__startswith=name).order_by("pk"))
    if not found:
        for index in range(ACCOUNTS):
            _user, account = user_signup(
                email=f"{name.replace(' ', '-')}-{index}@example.com",
                password="bench-password-123",
                name="",
                account_name=f"{name} {index}",
                currency="CNY",
                email_verified=True,
                starter_pack=False,
                tier=Tier.objects.get(slug="enterprise"),
            )
            made = [account.projects.get()] + [
                project_create(account=account, name=f"p{n}", actor=None)
                for n in range(projects - 1)
            ]
            for n in range(keys):
                api_key_create(
                    account=account, project=made[n % projects], label=f"k{n}", actor=None
                )
            found.append(account)
    return [(account, list(ApiKey.objects.filter(account=account))) for account in found]


def _copy(table: str, columns: str, buffer: io.StringIO, *, rebuild_indexes: bool) -> None:
    """COPY rows in; with `rebuild_indexes`, the table's plain indexes (not those behind a
    constraint) are dropped first and made again after, as a bulk import would."""
    from django.db import connection

    with connection.cursor() as cursor:
        definitions = []
        if rebuild_indexes:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint WHERE conindid = "
                "(quote_ident(schemaname) || '.' || quote_ident(indexname))::regclass)",
                [table],
            )
            definitions = cursor.fetchall()
            for name, _definition in definitions:
                cursor.execute(f'DROP INDEX "{name}"')
        buffer.seek(0)
        with cursor.connection.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)
        for _name, definition in definitions:
            cursor.execute(definition)
        cursor.execute(f"ANALYZE {table}")


def _text(rng: random.Random) -> str:
    parts = [rng.choice(ZH if rng.random() < 0.5 else EN) for _ in range(rng.randint(2, 6))]
    return "，".join(parts) + f" #{rng.randint(0, 10**6)}"


def history(first: int, last: int) -> None:
    """Prompt logs `first`..`last` over the history accounts, as the gateway writes them
    (search_text is the messages' text and the response)."""
    accounts = _accounts(HISTORY_NAME)
    rng = random.Random(first)  # noqa: S311 - benchmark data, the same for a given range
    now = datetime.now(UTC)
    buffer = io.StringIO()
    for index in range(first, last):
        account, _keys = accounts[index % len(accounts)]
        prompt, answer = _text(rng), _text(rng)
        at = now - timedelta(seconds=rng.randint(0, DAYS * 24 * 3600))
        search_text = f"{prompt}\n{answer}".replace("\t", " ").replace("\n", "\\n")
        buffer.write(
            f"{account.pk}\thb-{index}\tglm-4.7\t[]\t{{}}\t{answer}\t200\t"
            f"{rng.randint(10, 4000)}\t{rng.randint(10, 2000)}\t{rng.randint(50, 9000)}\t"
            f"{at.isoformat()}\t{search_text}\t{prompt[:200]}\n"
        )
    _copy(
        "history_promptlog",
        "account_id, request_id, model, messages, parameters, response_text, status, "
        "input_tokens, output_tokens, latency_ms, created_at, search_text, preview",
        buffer,
        rebuild_indexes=True,
    )


def usage(first: int, last: int) -> None:
    """Usage records `first`..`last` (a fifth refused or failed) over the usage accounts,
    3 projects, 4 keys and 4 models each, then every account's roll-ups rebuilt (as
    `manage.py rebuild_rollups` after an import)."""
    from django.db import connection

    from usage.rollups import rollups_rebuild

    accounts = _accounts(USAGE_NAME, projects=3, keys=4)
    rng = random.Random(first)  # noqa: S311 - benchmark data
    now = datetime.now(UTC)
    buffer = io.StringIO()
    for index in range(first, last):
        account, keys = accounts[index % len(accounts)]
        key = rng.choice(keys)
        at = now - timedelta(seconds=rng.randint(0, DAYS * 24 * 3600))
        roll = rng.random()
        status, code = (200, "") if roll < 0.8 else (429, "1303") if roll < 0.95 else (502, "1230")
        tokens_in = rng.randint(10, 20_000) if status == 200 else 0
        tokens_out = rng.randint(1, 4_000) if status == 200 else 0
        fee = (tokens_in * 2_000 + tokens_out * 8_000) if status == 200 else 0
        bonus = fee // 10
        buffer.write(
            f"{account.pk}\t{key.project_id}\t{key.pk}\tu-{index}\t\tapi\t{rng.choice(MODELS)}\t"
            f"f\t{status}\t{code}\t{tokens_in}\t{tokens_out}\t0\t2000000000\t8000000000\t"
            f"{fee}\t{fee - bonus}\t{bonus}\t0\tf\t{rng.randint(100, 9000)}\t\\N\t"
            f"{at.isoformat()}\n"
        )
    _copy(
        "billing_usagerecord",
        "account_id, project_id, api_key_id, request_id, client_request_id, source, model, "
        "stream, status, code, input_tokens, output_tokens, pack_tokens, input_price_nano, "
        "output_price_nano, fee_nano, recharge_nano, bonus_nano, arrears_nano, estimated, "
        "latency_ms, first_token_ms, created_at",
        buffer,
        rebuild_indexes=False,
    )
    for account, _keys in accounts:
        rollups_rebuild(account=account)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_usagehourly")
        cursor.execute("ANALYZE billing_usagedaily")


def main() -> None:
    import django

    django.setup()
    # Run directly, or as a phase by bench.common.run_phase (arguments after --phase).
    args = sys.argv[sys.argv.index("--phase") + 1 :] if "--phase" in sys.argv else sys.argv[1:]
    kind, first, last = args[0], int(args[1]), int(args[2])
    started = time.perf_counter()
    {"history": history, "usage": usage}[kind](first, last)
    print(f"seeded {kind} rows {first:,}..{last:,} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
