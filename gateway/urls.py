from django.urls import path

from gateway import pages, playground, views

urlpatterns = [
    path("api/paas/v4/chat/completions", views.chat_completions, name="gateway_chat"),
    path("api/paas/v4/models", views.models, name="gateway_models"),
    # The GLM Coding Plan's endpoint (issue 22): billed to the plan, never to the balance.
    path(
        "api/coding/paas/v4/chat/completions",
        views.coding_chat_completions,
        name="gateway_coding_chat",
    ),
    path("api/coding/paas/v4/models", views.coding_models, name="gateway_coding_models"),
    # The Anthropic-compatible Messages API (issue 23): Claude Code and the anthropic SDK.
    path("api/anthropic/v1/messages", views.anthropic_messages, name="gateway_messages"),
    path(
        "api/anthropic/v1/messages/count_tokens",
        views.anthropic_count_tokens,
        name="gateway_count_tokens",
    ),
    path("simulator/v1/messages", views.simulator_messages, name="simulator_messages"),
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
