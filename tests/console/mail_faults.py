"""A mail server that fails on demand: the fault the outbox tests inject (a real SMTP server
cannot be made to fail N times on cue). It is the test mailbox (locmem) otherwise."""

import smtplib

from django.core.mail.backends.locmem import EmailBackend


class FailingMailBackend(EmailBackend):
    failures_left = 0

    @classmethod
    def fail_next(cls, count: int, settings) -> None:
        """Make the next `count` sends fail (the `settings` fixture restores the mailer)."""
        cls.failures_left = count
        settings.MAILERS = {"default": {"BACKEND": f"{cls.__module__}.{cls.__qualname__}"}}

    def send_messages(self, messages):
        if FailingMailBackend.failures_left > 0:
            FailingMailBackend.failures_left -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)
