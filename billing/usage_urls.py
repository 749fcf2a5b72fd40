from django.urls import path

from billing import usage_views

app_name = "usage"

urlpatterns = [
    path("", usage_views.usage_index, name="index"),
    path("export.csv", usage_views.usage_csv, name="csv"),
]
