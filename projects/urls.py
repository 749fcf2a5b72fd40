from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_create, name="create"),
    path("budget/", views.account_budget, name="budget"),
    path("<int:project_id>/", views.project_detail, name="detail"),
    path("<int:project_id>/edit/", views.project_edit, name="edit"),
    path("<int:project_id>/cap/", views.project_cap, name="cap"),
    path("<int:project_id>/archive/", views.project_archive, name="archive"),
]
