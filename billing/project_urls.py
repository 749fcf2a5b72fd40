"""The projects namespace: its pages live in billing/project_views.py (see there why)."""

from django.urls import path

from billing import project_views

app_name = "projects"

urlpatterns = [
    path("", project_views.project_list, name="list"),
    path("new/", project_views.project_create, name="create"),
    path("budget/", project_views.account_budget, name="budget"),
    path("<int:project_id>/", project_views.project_detail, name="detail"),
    path("<int:project_id>/edit/", project_views.project_edit, name="edit"),
    path("<int:project_id>/cap/", project_views.project_cap, name="cap"),
    path("<int:project_id>/archive/", project_views.project_archive, name="archive"),
]
