from django.urls import path

from usage import api as usage_api

app_name = "usage_api"

urlpatterns = [
    path("usage", usage_api.usage, name="usage"),
    path("costs", usage_api.costs, name="costs"),
]
