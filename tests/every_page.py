"""Every GET page of the console, and an account with enough data that each page has
something to show: shared by tests/browser/test_every_page.py (in a browser, in English and
Chinese) and tests/console/test_chinese_pages.py (no untranslated text in Chinese).

The list is derived from the persona table of tests/console/test_personas.py, which already
fails on a URL pattern without an entry: a new GET URL is visited here without more work,
unless it needs kwargs (then `test_every_page_has_its_kwargs` names it).

Everything seeded is named in Chinese or with digits, so that the Chinese check sees only the
interface's own text.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from alerts.services import alert_settings_save
from billing.invoices import Buyer, invoice_request
from billing.payments import payment_method_add, payment_record_manual, payment_start_bank_transfer
from console import api_errors as errors
from console.models import JobRun
from console.money import NANO_PER_UNIT
from console.roles import Role
from console.services import invitation_create
from gateway.services import Refused, console_caller, new_request_id, record_refusal
from history.services import history_export_build, history_export_start, prompt_log_write
from keys.services import api_key_create
from notifications.models import Notification
from notifications.services import notify
from notifications.webhooks import webhook_endpoint_create
from projects.services import project_create
from tests.billing.traffic import mixed_traffic
from tests.console.test_personas import EXPECTATIONS
from tests.factories import add_member, make_account, make_user

# GET URLs that are not pages: file downloads (PDF, CSV) and JSON APIs.
NOT_PAGES = {
    "billing:transactions_csv",
    "billing:receipt",
    "billing:invoice_pdf",
    "billing:statement_csv",
    "billing:statement_pdf",
    "usage:csv",
    "history:export_download",
    "history:export",  # streams the file (a page only past the export limit)
    "usage_api:usage",
    "usage_api:costs",
    "gateway_models",
    "gateway_coding_models",
    "plans_api:quota_limit",
    "plans_api:model_usage",
    "plans_api:tool_usage",
}
# Pages for the signed-out only: a signed-in visitor is redirected away from them.
SIGNED_OUT = {"login", "signup"}
# Platform staff only (the owner gets a 404).
STAFF = {"staff_jobs"}
# HTML fragments that htmx swaps into a page (no layout of their own): their text is
# checked, the whole-page checks (one <h1>, <html lang>) do not apply.
FRAGMENTS = {"playground_result", "usage:project_panel", "usage:key_panel"}
# A page that is shown with an error status on purpose.
STATUS = {
    "verify_email": 400,
    # The staff's two-factor setup link, as the owner (not staff) meets it: a 404, the refusal
    # page for a link. Staff: tests/console/test_staff_two_factor_link.py.
    "two_factor_staff_link": 404,
    "two_factor_staff_link_open": 404,
}

# The object of each detail page, from the world below.
KWARGS = {
    "verify_email": lambda w: {"token": "not-a-token"},
    "two_factor_staff_link_open": lambda w: {"token": "not-a-link"},
    "password_reset_confirm": lambda w: w.password_reset_kwargs(),
    "member_remove": lambda w: {"membership_id": w.developer.pk},
    "invitation_accept": lambda w: {"token": w.invitation_token},
    "projects:detail": lambda w: {"project_id": w.project.pk},
    "projects:archive": lambda w: {"project_id": w.project.pk},
    "billing:payment": lambda w: {"payment_id": w.payment.pk},
    "billing:card_remove": lambda w: {"card_id": w.card.pk},
    "history:detail": lambda w: {"log_id": w.log.pk},
    "history:export_status": lambda w: {"export_id": w.export.pk},
    "notifications:webhook_detail": lambda w: {"endpoint_id": w.webhook.pk},
    "notifications:webhook_delete": lambda w: {"endpoint_id": w.webhook.pk},
    "playground_result": lambda w: {"request_id": w.playground_request},
    "keys:detail": lambda w: {"key_id": w.key.pk},
    "keys:revoke": lambda w: {"key_id": w.key.pk},
    "usage:project_panel": lambda w: {"project_id": w.project.pk},
    "usage:key_panel": lambda w: {"key_id": w.key.pk},
    "usage:request_cost": lambda w: {"log_id": w.log.pk},
}


def page_names() -> list[str]:
    """Every GET page of the console, sorted."""
    return sorted(
        name
        for name, (method, _kwargs, _data, _statuses) in EXPECTATIONS.items()
        if method == "get" and name not in NOT_PAGES
    )


def owner_page_names() -> list[str]:
    """The pages the signed-in owner visits (everything but the signed-out and staff pages)."""
    return [name for name in page_names() if name not in SIGNED_OUT | STAFF]


def page_url(name: str, world) -> str:
    kwargs = KWARGS[name](world) if name in KWARGS else None
    return reverse(name, kwargs=kwargs)


@dataclass
class PageWorld:
    owner: object
    staff: object
    account: object
    developer: object
    project: object
    key: object
    log: object
    export: object
    payment: object
    card: object
    webhook: object
    invitation_token: str
    playground_request: str

    def password_reset_kwargs(self) -> dict:
        """A valid link from the reset email; made when needed, since signing in (which
        changes the last login) invalidates earlier ones."""
        owner = type(self.owner).objects.get(pk=self.owner.pk)
        return {
            "uidb64": urlsafe_base64_encode(force_bytes(owner.pk)),
            "token": default_token_generator.make_token(owner),
        }


def build_page_world(*, mailoutbox, capture_on_commit, language: str = "") -> PageWorld:
    """An owner whose account has projects, keys, usage (through the gateway's settlement),
    a recharge, a pending transfer, a card, an invoice, prompt logs, an export, a
    notification, a webhook endpoint, alert settings, a teammate and an invitation; and a
    platform staff user. `language` is the owner's saved interface language; the fixtures
    `mailoutbox` and `django_capture_on_commit_callbacks` are passed in."""
    # Built in the owner's language, as their own requests would: the default project's name,
    # the starter pack's and the tier promotion's audit reason are stored in it.
    with translation.override(language or "en"):
        return _build(mailoutbox, capture_on_commit, language)


def _build(mailoutbox, capture_on_commit, language) -> PageWorld:
    owner = make_user("owner@example.com", name="张伟", language=language)
    account = make_account(owner, name="智谱测试 1号", currency="CNY")
    developer = add_member(account, Role.DEVELOPER, make_user("dev@example.com", name="李娜"))
    staff = make_user("staff@example.com", name="王芳", is_staff=True, language=language)
    make_account(staff, name="运维 2号")
    owner_membership = account.memberships.get(user=owner)
    with capture_on_commit(execute=True):  # the invitation's email is sent on commit
        invitation_create(
            account=account, inviter=owner_membership, email="invitee@example.com", role="viewer"
        )
    invitation_token = mailoutbox[-1].body.split("/invitations/")[1].split("/")[0]

    project = project_create(account=account, name="客服机器人", actor=owner)
    second = project_create(account=account, name="数据分析 2", actor=owner)
    payment_record_manual(account=account, amount_nano=500 * NANO_PER_UNIT, reference="1001")
    key = api_key_create(account=account, project=project, label="生产 1", actor=owner).key
    other_key = api_key_create(account=account, project=second, label="测试 2", actor=owner).key
    mixed_traffic([key, other_key], days=10)
    log = prompt_log_write(
        account=account,
        project=project,
        api_key=key,
        request_id="r-1001",
        model="glm-4.7",
        messages=[{"role": "user", "content": "请写一首关于秋天的诗"}],
        parameters={"temperature": 0.7},
        response_text="秋风起,落叶黄。",
        status=200,
        input_tokens=12,
        output_tokens=9,
        latency_ms=420,
        first_token_ms=120,
        created_at=timezone.now(),
    )
    export = history_export_start(account=account, user=owner, query={"range": "7d"}, fmt="csv")
    history_export_build(export_id=export.pk)
    payment = payment_start_bank_transfer(
        account=account, amount_nano=200 * NANO_PER_UNIT, actor=owner
    )
    card = payment_method_add(
        account=account,
        number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
        actor=owner,
    )
    invoice_request(
        account=account,
        amount_nano=100 * NANO_PER_UNIT,
        buyer=Buyer(type="individual", title="张伟"),
        actor=owner,
    )
    webhook = webhook_endpoint_create(
        account=account, url="https://hooks.example.com/1", actor=owner, ip=None
    )
    alert_settings_save(
        account=account,
        actor=owner,
        balance_below_nano=10 * NANO_PER_UNIT,
        caps=True,
        spike_tenths=30,
        pack_low_percent=10,
        pack_expiry_days=7,
        email=True,
        in_app=True,
        webhook=True,
    )
    notify(
        account=account,
        event_type="alert.balance_low",
        event_id="page-1",
        title="余额不足",
        body="账户余额低于 10 元。",
        email=False,
        webhook=False,
    )
    assert Notification.objects.filter(user=owner).exists()
    # The staff job page: one job's last run went well, another's failed.
    started = timezone.now() - timedelta(hours=1)
    for task, outcome, summary in [
        ("console.tasks.purge_old_invitations", JobRun.Outcome.SUCCESS, "3"),
        (
            "billing.tasks.sweep_pending_payments",
            JobRun.Outcome.FAILURE,
            "OperationalError: timeout",
        ),
    ]:
        JobRun.objects.create(
            task_name=task,
            task_id="1",
            started_at=started,
            finished_at=started + timedelta(seconds=2),
            duration_ms=2000,
            outcome=outcome,
            summary=summary,
            hostname="celery@worker1",
        )
    playground_request = new_request_id()
    record_refusal(
        refused=Refused(errors.FREQUENCY, console_caller(account=account, project=project)),
        request_id=playground_request,
        body={"model": "glm-4.7"},
        client_request_id="",
        stream=True,
    )
    return PageWorld(
        owner=owner,
        staff=staff,
        account=account,
        developer=developer,
        project=project,
        key=key,
        log=log,
        export=export,
        payment=payment,
        card=card,
        webhook=webhook,
        invitation_token=invitation_token,
        playground_request=playground_request,
    )
