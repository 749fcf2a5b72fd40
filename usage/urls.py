from django.urls import path

from usage import views as usage_views

app_name = "usage"

urlpatterns = [
    path("", usage_views.usage_index, name="index"),
    path("export.csv", usage_views.usage_csv, name="csv"),
    # The panels the project and key pages load (htmx partials).
    path("projects/<int:project_id>/panel/", usage_views.project_panel, name="project_panel"),
    path("keys/<int:key_id>/panel/", usage_views.key_panel, name="key_panel"),
    # What a request of the prompt history was charged (an htmx partial of its page).
    path("requests/<int:log_id>/cost/", usage_views.request_cost, name="request_cost"),
]
