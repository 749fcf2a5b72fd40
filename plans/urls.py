from django.urls import path

from plans import views

app_name = "plans"

urlpatterns = [
    path("", views.subscription, name="subscription"),
    path("subscribe/", views.subscribe, name="subscribe"),
    path("upgrade/", views.upgrade, name="upgrade"),
    path("auto-renew/", views.auto_renew, name="auto_renew"),
    path("downgrade/", views.downgrade, name="downgrade"),
    path("downgrade/cancel/", views.downgrade_cancel, name="downgrade_cancel"),
]
