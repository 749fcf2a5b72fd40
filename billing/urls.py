from django.urls import path

from billing import document_views, payment_views, views

app_name = "billing"

urlpatterns = [
    path("", views.billing_index, name="index"),
    path("transactions/", views.transactions, name="transactions"),
    path("transactions.csv", views.transactions_csv, name="transactions_csv"),
    path("packs/", views.packs, name="packs"),
    path("packs/buy/<int:product_id>/", views.buy_pack, name="buy_pack"),
    # Recharges and saved cards.
    path("recharge/", payment_views.recharge, name="recharge"),
    path("recharge/start/", payment_views.recharge_start, name="recharge_start"),
    path("payments/<int:payment_id>/", payment_views.payment_detail, name="payment"),
    path("payments/<int:payment_id>/cancel/", payment_views.payment_cancel, name="payment_cancel"),
    path("cards/", payment_views.cards, name="cards"),
    path("cards/add/", payment_views.card_add, name="card_add"),
    path("cards/<int:card_id>/default/", payment_views.card_default, name="card_default"),
    path("cards/<int:card_id>/remove/", payment_views.card_remove, name="card_remove"),
    path("settings/", payment_views.billing_settings, name="settings"),
    path("settings/invoice-details/", payment_views.invoice_details_save, name="invoice_details"),
    path("settings/auto-recharge/", payment_views.auto_recharge_save, name="auto_recharge"),
    # Documents.
    path("receipts/<int:entry_id>.pdf", document_views.receipt, name="receipt"),
    path("invoices/", document_views.invoice_list, name="invoices"),
    path("invoices/request/", document_views.invoice_request, name="invoice_request"),
    path("invoices/<int:invoice_id>.pdf", document_views.invoice_pdf, name="invoice_pdf"),
    path("statements/", document_views.statement_list, name="statements"),
    path("statements/generate/", document_views.statement_generate, name="statement_generate"),
    path("statements/<str:month>.csv", document_views.statement_csv, name="statement_csv"),
    path("statements/<str:month>.pdf", document_views.statement_pdf, name="statement_pdf"),
]
