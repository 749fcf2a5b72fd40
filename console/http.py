"""Small request and response helpers every app's views share."""


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def form_status(form) -> int:
    """422 for a submitted form with errors, so htmx and tests can tell a refusal."""
    return 422 if form.is_bound and form.errors else 200
