# Import the Celery app with Django, so tasks enqueued from any process (web, scripts,
# management commands) use the configured broker instead of Celery's AMQP default.
from config.celery import app as celery_app

__all__ = ["celery_app"]
