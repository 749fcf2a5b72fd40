from django.urls import path

from usage import views as usage_views

app_name = "usage"

urlpatterns = [
    path("", usage_views.usage_index, name="index"),
    path("export.csv", usage_views.usage_csv, name="csv"),
]
