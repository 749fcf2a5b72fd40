from django.urls import path

from gateway import views

urlpatterns = [
    path("api/paas/v4/chat/completions", views.chat_completions, name="gateway_chat"),
    path("api/paas/v4/models", views.models, name="gateway_models"),
    path("simulator/v1/chat/completions", views.simulator_chat, name="simulator_chat"),
]
