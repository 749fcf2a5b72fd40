from django.urls import path

from history import views

app_name = "history"

urlpatterns = [
    path("", views.history_search, name="search"),
    path("<int:log_id>/", views.history_detail, name="detail"),
    path("export/", views.history_export, name="export"),
    path("delete/", views.history_delete, name="delete"),
    path("exports/", views.history_export_start, name="export_start"),
    path("exports/<int:export_id>/", views.history_export_status, name="export_status"),
    path(
        "exports/<int:export_id>/download/",
        views.history_export_download,
        name="export_download",
    ),
]
