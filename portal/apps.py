from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The top app: the pages and services that read or orchestrate several apps (the
    overview, account opening, sign-up, the staff back-office, demo seeding). It has no
    models of its own."""

    name = "portal"
