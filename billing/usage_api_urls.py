from django.urls import path

from billing import usage_api

app_name = "usage_api"

urlpatterns = [
    path("usage", usage_api.usage, name="usage"),
    path("costs", usage_api.costs, name="costs"),
]
