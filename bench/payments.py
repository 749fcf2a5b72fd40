"""Payments and documents: card recharges per second (sandbox provider, full settlement:
payment row, ledger entries, promotion bonus, tier check, audit) on one account and spread
over accounts; invoices issued per second with gapless numbering (one year's counter row,
taken by every request); and PDF render times. Headline (printed last): invoices per second
at 16 clients, with the numbering checked for gaps and duplicates.

Each client is a separate process. The benchmark creates its own accounts (and leaves
them: point DATABASE_URL at a scratch database).

    DATABASE_URL=postgres://user:pass@127.0.0.1:5432/scratch .venv/bin/python bench/payments.py
"""

import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
SECONDS = common.seconds(full=6, quick=2)
UNIT = 10**9


def _django():
    import django

    django.setup()


def _worker(kind, account_ids, seconds, queue, ready, start) -> None:
    _django()
    from billing.invoices import Buyer, invoice_request
    from billing.models import PaymentMethod
    from billing.payments import payment_start_card
    from console.models import Account

    accounts = list(Account.objects.filter(pk__in=account_ids))
    cards = {card.account_id: card for card in PaymentMethod.objects.filter(account__in=accounts)}
    buyer = Buyer(type="company", title="基准测试有限公司", tax_id="91350100M000100Y43")
    ready.release()
    start.wait()
    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        account = accounts[done % len(accounts)]
        if kind == "card":
            payment_start_card(
                account=account, amount_nano=20 * UNIT, payment_method=cards[account.pk], actor=None
            )
        else:
            invoice_request(account=account, amount_nano=UNIT, buyer=buyer, actor=None)
        done += 1
    queue.put(done)


def _accounts(count: int, *, paid_units: int) -> list[int]:
    from billing.payments import payment_method_add, payment_record_manual
    from tests.factories import make_account, make_user

    ids = []
    for _ in range(count):
        account = make_account(make_user(), starter_pack=False)
        account.tier_pinned = True  # keep the tier out of the measurement's way
        account.save(update_fields=["tier_pinned"])
        payment_method_add(
            account=account,
            number="4242424242424242",
            exp_month=12,
            exp_year=2040,
            cvc="123",
            actor=None,
        )
        if paid_units:
            payment_record_manual(
                account=account, amount_nano=paid_units * UNIT, reference=f"bench-{account.pk}"
            )
        ids.append(account.pk)
    return ids


def _run(kind: str, clients: int, per_client_accounts) -> float:
    ctx = multiprocessing.get_context("spawn")
    queue, ready, start = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    workers = [
        ctx.Process(
            target=_worker, args=(kind, per_client_accounts[i], SECONDS, queue, ready, start)
        )
        for i in range(clients)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    start.set()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / SECONDS


def _pdf_times() -> dict[str, float]:
    from datetime import date

    from billing.documents import invoice_pdf, receipt_pdf, statement_pdf
    from billing.models import Invoice, LedgerEntry
    from billing.receipts import receipt_for
    from billing.statements import statement_data
    from console.models import Account

    invoice = Invoice.objects.order_by("-pk").first()
    entry = LedgerEntry.objects.filter(kind="recharge").order_by("-pk").first()
    account = Account.objects.get(pk=entry.account_id)
    data = statement_data(account=account, month=date.today().replace(day=1))
    cases = {
        "invoice": lambda: invoice_pdf(invoice),
        "receipt": lambda: receipt_pdf(receipt_for(entry=entry), account),
        "statement": lambda: statement_pdf(data, partial=True),
    }
    results = {}
    for name, render in cases.items():
        render()  # fonts load once per process
        samples = []
        for _ in range(10):
            began = time.perf_counter()
            render()
            samples.append((time.perf_counter() - began) * 1000)
        results[name] = statistics.median(samples)
    return results


def main() -> None:
    _django()
    from billing.models import Invoice

    print(f"{SECONDS:.0f} s per row; each client is a process")
    one = _accounts(1, paid_units=0)
    hot = _run("card", 8, [one] * 8)
    print(f"card recharges, one account, 8 clients: {hot:,.0f}/s")
    spread = _accounts(8, paid_units=0)
    rate = _run("card", 8, [[account_id] for account_id in spread])
    print(f"card recharges, 8 accounts, 8 clients: {rate:,.0f}/s")

    invoice_accounts = _accounts(16, paid_units=1_000_000)
    first_new = Invoice.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    rates = {}
    for clients in (1, 16):
        rates[clients] = _run("invoice", clients, [[invoice_accounts[i]] for i in range(clients)])
        print(f"invoices, {clients} clients (separate accounts): {rates[clients]:,.0f}/s")
    numbers = sorted(
        (year, sequence) for year, sequence in Invoice.objects.values_list("year", "sequence")
    )
    year = numbers[-1][0]
    sequences = [sequence for y, sequence in numbers if y == year]
    gapless = sequences == list(range(1, len(sequences) + 1))
    issued = Invoice.objects.filter(pk__gt=first_new).count()
    print(
        f"invoices issued in this run: {issued:,}; numbering of {year}: "
        f"{'gapless, no duplicates' if gapless else 'GAPS OR DUPLICATES'}"
    )

    pdfs = _pdf_times()
    for name, milliseconds in pdfs.items():
        print(f"PDF {name}: {milliseconds:.0f} ms (median of 10)")
    if not gapless:
        sys.exit("invoice numbering has gaps or duplicates")
    common.report(
        "payments",
        {
            "card_recharges_per_second": {"one account, 8 clients": hot, "8 accounts": rate},
            "invoices_per_second": {str(clients): value for clients, value in rates.items()},
            "invoices_issued": issued,
            "pdf_ms": pdfs,
        },
        [],
        f"invoices at 16 clients: {rates[16]:,.0f}/s "
        f"({rates[16] / rates[1]:.2f}x one client), numbering gapless",
    )


if __name__ == "__main__":
    main()
