from asgiref.sync import async_to_sync, iscoroutinefunction
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve
from django.utils import translation
from django.utils.decorators import sync_and_async_middleware


class UserLanguageMiddleware:
    """A signed-in user's saved language wins over the cookie and the browser's header.

    Runs after AuthenticationMiddleware (LocaleMiddleware runs before it and cannot see the
    user), so the choice follows the person to any browser.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)


# The gateway's API views (gateway/views.py marks them): JSON for programs, no session,
# cookie, CSRF token, language or page around them.
GATEWAY_PREFIXES = ("/api/paas/", "/api/coding/", "/api/anthropic/")


def _gateway_view(request):
    """The resolved URL when it is a view marked `gateway_fast_path`, else None."""
    if not request.path_info.startswith(GATEWAY_PREFIXES):
        return None
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    return match if getattr(match.func, "gateway_fast_path", False) else None


@sync_and_async_middleware
def gateway_fast_path(get_response):
    """First in MIDDLEWARE: a request for a view marked `gateway_fast_path` goes straight to
    the view; everything else takes the whole stack.

    Under ASGI every MiddlewareMixin runs its hooks through `sync_to_async`, and a sync-only
    middleware (WhiteNoise, ours) moves the rest of the stack into a thread and back: about
    twenty thread hops per request, more than the gateway's key lookup, limits and
    settlement together in its profile (docs/performance.md). The API keeps what concerns
    it: SecurityMiddleware's HTTPS redirect and headers, and the Content-Length
    CommonMiddleware would set.

    Both sync and async, so that pages under WSGI (and the sync test client) run exactly as
    before. Under ASGI Django still calls it in a thread (WhiteNoise below is sync-only), so
    a gateway request costs one hop in and one back to the loop for its async view."""
    security = SecurityMiddleware(get_response)

    def finish(request, response):
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return security.process_response(request, response)

    if iscoroutinefunction(get_response):

        async def middleware(request):
            match = _gateway_view(request)
            if match is None:
                return await get_response(request)
            request.resolver_match = match
            response = security.process_request(request)
            if response is None:
                response = await match.func(request, *match.args, **match.kwargs)
            return finish(request, response)

    else:

        def middleware(request):
            match = _gateway_view(request)
            if match is None:
                return get_response(request)
            request.resolver_match = match
            response = security.process_request(request)
            if response is None:
                response = async_to_sync(match.func)(request, *match.args, **match.kwargs)
            return finish(request, response)

    return middleware
