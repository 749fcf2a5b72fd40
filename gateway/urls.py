from django.urls import path

from gateway import pages, playground, views

urlpatterns = [
    path("api/paas/v4/chat/completions", views.chat_completions, name="gateway_chat"),
    path("api/paas/v4/models", views.models, name="gateway_models"),
    path("simulator/v1/chat/completions", views.simulator_chat, name="simulator_chat"),
    # Console pages about calling the API.
    path("pricing/", pages.pricing, name="pricing"),
    path("quickstart/", pages.quickstart, name="quickstart"),
    # The playground: chat from the console, billed like the API.
    path("playground/", playground.playground, name="playground"),
    path("playground/chat", playground.playground_chat, name="playground_chat"),
    path(
        "playground/requests/<str:request_id>/",
        playground.playground_result,
        name="playground_result",
    ),
]
