"""Console pages about calling the API: the price list and the quickstart. Everyone in the
account may read them; neither shows anything secret (the quickstart's key is a
placeholder, never one of the account's keys)."""

from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from billing.selectors import pack_products_on_sale
from console.tenancy import account_view
from gateway.selectors import model_alias_list, price_list

# The model the quickstart's snippets name when it is callable: the flagship, as in
# docs/api.md; otherwise the first callable one.
QUICKSTART_MODEL = "glm-4.7"

# The Anthropic-compatible endpoint's base URL for clients: the anthropic SDKs and Claude
# Code append /v1/messages themselves, so it ends without a slash.
ANTHROPIC_MESSAGES_SUFFIX = "/v1/messages"


@account_view("overview.view")
@require_GET
def pricing(request):
    currency = request.account.currency
    return render(
        request,
        "gateway/pricing.html",
        {
            "currency": currency,
            "prices": price_list(currency=currency),
            "products": pack_products_on_sale(),
        },
    )


@account_view("overview.view")
@require_GET
def quickstart(request):
    callable_models = [row.model for row in price_list(currency=request.account.currency)]
    model = (
        QUICKSTART_MODEL
        if QUICKSTART_MODEL in callable_models or not callable_models
        else callable_models[0]
    )
    # The SDKs append `chat/completions` to the base URL: it must end with a slash.
    base_path = reverse("gateway_models").removesuffix("models")
    coding_path = reverse("gateway_coding_models").removesuffix("models")
    aliases = model_alias_list()
    # A tier's variable names its default alias's model while that model can be called.
    served_as = {alias.pattern: alias.model for alias in aliases if alias.model in callable_models}
    return render(
        request,
        "gateway/quickstart.html",
        {
            "base_url": request.build_absolute_uri(base_path),
            # The coding tools' recipes (issue 22): the plan's endpoint for subscribers.
            "coding_base_url": request.build_absolute_uri(coding_path),
            "model": model,
            # Claude Code's recipe (issue 23): the Anthropic-compatible endpoint, the alias
            # table, and for the optional tier variables the model each tier's default alias
            # serves (else the page's model), as the vendor's guide sets them.
            "anthropic_base_url": request.build_absolute_uri(
                reverse("gateway_messages").removesuffix(ANTHROPIC_MESSAGES_SUFFIX)
            ),
            "aliases": aliases,
            "callable_models": callable_models,
            "opus_model": served_as.get("claude-*opus*", model),
            "sonnet_model": served_as.get("claude-*sonnet*", model),
            "haiku_model": served_as.get("claude-*haiku*", model),
            # Never one of the account's keys (only hashes are stored, and the page is for
            # every role). Plain strings, not safe ones: the page escapes the angle brackets.
            "key_placeholder": _("<your API key>"),
            # Translators: the message the example requests send.
            "prompt": _("Hello"),
        },
    )
