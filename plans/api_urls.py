from django.urls import path

from plans import api

app_name = "plans_api"

urlpatterns = [
    path("quota/limit", api.quota_limit, name="quota_limit"),
    path("model-usage", api.model_usage, name="model_usage"),
    path("tool-usage", api.tool_usage, name="tool_usage"),
]
