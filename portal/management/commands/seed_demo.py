"""Demo data for `make run`: idempotent, created once through the same services as real use.

Later capabilities extend `seed_demo` so the demo always shows a living console (backdated
history created once, never new traffic at every start).
"""

import json
import random
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.invoices import Buyer, invoice_request
from billing.models import LedgerEntry, Payment
from billing.payments import payment_method_add, payment_start_bank_transfer, payment_start_card
from billing.selectors import current_month, previous_month
from billing.statements import statement_generate
from console import api_errors
from console.models import Announcement, AuditEvent, Tier, User
from console.money import NANO_PER_UNIT
from console.services import invitation_create
from gateway.services import Admitted, Outcome
from gateway.settlement import settle
from keys.selectors import Authenticated
from keys.services import api_key_create, api_key_revoke
from portal.services import user_signup
from projects.models import Project
from projects.services import account_set_budget, project_create, project_set_cap
from usage.models import UsageRecord

DEMO_EMAIL = "demo@example.com"
DEMO_TEAMMATE = "finance@example.com"


def demo_password() -> str:
    """Generated once per checkout and kept beside the other local secrets."""
    path = settings.VAR_DIR / "demo-login.json"
    if path.exists():
        return json.loads(path.read_text())["password"]
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    password = "demo-" + secrets.token_urlsafe(9)
    path.write_text(json.dumps({"email": DEMO_EMAIL, "password": password}))
    path.chmod(0o600)
    return password


PROMPTS = [
    ("user", "请帮我总结一下这张工单：客户反映智谱AI开放平台的API密钥无法使用。"),
    ("user", "How do I rotate an API key without downtime?"),
    ("user", "把这段英文翻译成中文：The invoice will be issued after the recharge clears."),
    ("user", "Write a polite reply to a customer asking about GLM-4.7 pricing."),
    ("user", "用三句话解释什么是资源包，以及它和余额的扣费顺序。"),
]


def _seed_money(*, account, project, key, spare) -> None:
    """A recharge and 30 days of backdated API traffic, settled through the gateway's own
    settlement (charge, usage record, prompt log) as real requests are. Once only: the
    request ids are fixed, so a re-run would change nothing anyway."""
    now = timezone.now()
    # The demo account has been around for five weeks: its history below is backdated.
    account.created_at = now - timedelta(days=35)
    account.save(update_fields=["created_at"])
    card = payment_method_add(
        account=account,
        number="4242 4242 4242 4242",
        exp_month=12,
        exp_year=now.year + 3,
        cvc="123",
        actor=None,
    )
    # ¥1,000 earns the +5% promotion. Backdated before the traffic below, so statements
    # read in order (demo history only: real payments are never moved in time).
    payment = payment_start_card(
        account=account, amount_nano=1_000 * NANO_PER_UNIT, payment_method=card, actor=None
    )
    paid_at = now - timedelta(days=31)
    Payment.objects.filter(pk=payment.pk).update(created_at=paid_at, settled_at=paid_at)
    LedgerEntry.objects.filter(account=account, reference=payment.reference).update(
        created_at=paid_at
    )
    auth = Authenticated(key=key, project=project, account=account)
    staging = Authenticated(key=spare, project=project, account=account)
    randomness = random.Random(42)  # noqa: S311 - demo data, the same every time
    for day in range(30, 0, -1):
        for call in range(randomness.randint(3, 8)):
            model = randomness.choice(["glm-4.7", "glm-4.7", "glm-4.5-air", "glm-4.7-flash"])
            role, prompt = randomness.choice(PROMPTS)
            body = {"model": model, "messages": [{"role": role, "content": prompt}]}
            # Most traffic on the production key, some on the staging one; a few upstream
            # failures, so the usage page's error rate has something to show.
            caller = auth if call % 4 else staging
            failed = randomness.random() < 0.08
            admitted = Admitted(
                auth=caller,
                route=None,
                estimate=None,
                request_id=f"demo-{day}-{call}",
                reserved_nano=0,
            )
            if call == 1 and model == "glm-4.7":
                # Some of it from Claude Code, through the Anthropic-compatible endpoint under
                # a Claude name (the usage page's endpoint dimension has something to show).
                admitted.endpoint = UsageRecord.Endpoint.ANTHROPIC
                admitted.requested_model = "claude-sonnet-4-5-20250929"
            output_tokens = randomness.randint(5_000, 120_000)
            settle(
                admitted=admitted,
                body=body,
                outcome=Outcome(
                    code=api_errors.UPSTREAM_ERROR.code, status=api_errors.UPSTREAM_ERROR.status
                )
                if failed
                else Outcome(
                    status=200,
                    input_tokens=randomness.randint(20_000, 400_000),
                    output_tokens=output_tokens,
                    response_text=f"(demo answer, {output_tokens} tokens)",
                    latency_ms=randomness.randint(300, 9_000),
                    first_token_ms=randomness.randint(80, 900),
                ),
                client_request_id="",
                stream=bool(call % 2),
                at=now - timedelta(days=day, minutes=randomness.randint(0, 600)),
            )


def _seed_documents(*, account, user) -> None:
    """An invoice for part of the recharge, last month's statement, and a bank transfer
    waiting for staff, so every billing page has something to show."""
    invoice_request(
        account=account,
        amount_nano=500 * NANO_PER_UNIT,
        buyer=Buyer(
            type="company",
            title="演示科技（北京）有限公司 Demo Tech (Beijing) Co., Ltd.",
            tax_id="91350100M000100Y43",
            address="北京市海淀区中关村大街1号",
        ),
        actor=user,
    )
    last_month = previous_month(current_month(account=account))
    if last_month >= current_month(account=account, now=account.created_at):
        statement_generate(account=account, month=last_month)
    payment_start_bank_transfer(account=account, amount_nano=2_000 * NANO_PER_UNIT, actor=user)


class Command(BaseCommand):
    help = "Create the demo owner, account and projects once; print the demo login."

    def handle(self, *args, **options):
        password = demo_password()
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is not None:
            self.stdout.write("Demo data already present; nothing created.")
        else:
            with transaction.atomic():
                user, account = user_signup(
                    email=DEMO_EMAIL,
                    password=password,
                    name="Demo Owner",
                    account_name="Demo Team",
                    currency="CNY",
                    email_verified=True,
                    # Standard keeps 30 days of history: the demo's backdated month stays.
                    tier=Tier.objects.get(slug="standard"),
                    actor_kind=AuditEvent.ActorKind.SYSTEM,
                )
                support = project_create(
                    account=account,
                    name="Customer support bot",
                    description="GLM-4.7 answering support tickets in Chinese and English.",
                    actor=user,
                    actor_kind=AuditEvent.ActorKind.SYSTEM,
                )
                project_set_cap(
                    project=support, cap_nano=500 * NANO_PER_UNIT, mode="block", actor=user
                )
                account_set_budget(
                    account=account, budget_nano=2_000 * NANO_PER_UNIT, mode="alert", actor=user
                )
                # Demo keys whose full text nobody keeps (as in real life): create your own
                # in the console to call the API.
                demo_keys = []
                for label, environment in (("support-bot", "production"), ("eval", "staging")):
                    demo_keys.append(
                        api_key_create(
                            account=account,
                            project=support,
                            label=label,
                            environment=environment,
                            actor=user,
                            actor_kind=AuditEvent.ActorKind.SYSTEM,
                        ).key
                    )
                old = api_key_create(
                    account=account,
                    project=support,
                    label="old laptop",
                    environment="test",
                    actor=user,
                    actor_kind=AuditEvent.ActorKind.SYSTEM,
                )
                api_key_revoke(key=old.key, actor=user, reason="demo: a key that was revoked")
                _seed_money(account=account, project=support, key=demo_keys[0], spare=demo_keys[1])
                _seed_documents(account=account, user=user)
                Announcement.objects.get_or_create(
                    title="GLM-4.7 is available in the playground",
                    defaults={
                        "body": "Try it from the Playground page; messages are billed like "
                        "API calls.",
                        "starts_at": timezone.now() - timedelta(days=2),
                    },
                )
                owner = account.memberships.get(user=user)
                invitation_create(
                    account=account, inviter=owner, email=DEMO_TEAMMATE, role="finance"
                )
            projects = Project.objects.filter(account=account).count()
            self.stdout.write(
                f"Created demo account {account.name!r} (id {account.pk}) with "
                f"{projects} projects, 3 API keys (one revoked), a cap, a budget, a saved card, "
                f"a card recharge, 30 days of usage, an invoice, last month's statement, a "
                f"bank transfer waiting for staff and a pending invitation for {DEMO_TEAMMATE}."
            )
        self.stdout.write(f"Demo login: {DEMO_EMAIL} / {password}")
