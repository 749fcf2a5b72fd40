from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("", views.billing_index, name="index"),
    path("transactions/", views.transactions, name="transactions"),
    path("transactions.csv", views.transactions_csv, name="transactions_csv"),
    path("packs/", views.packs, name="packs"),
    path("packs/buy/<int:product_id>/", views.buy_pack, name="buy_pack"),
]
