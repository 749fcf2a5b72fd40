import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections


def run_async(test):
    """Run an async test body on a fresh event loop in its own thread: pytest-playwright's
    sync API keeps a loop running in the main thread, which rules out both an asyncio pytest
    plugin and asgiref's async_to_sync there. Connections opened by the body's threads are
    closed afterwards, so the test database can be dropped at the end of the session."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        async def body():
            try:
                return await test(*args, **kwargs)
            finally:
                await sync_to_async(connections.close_all)()

        def in_thread():
            try:
                return asyncio.run(body())
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(in_thread).result()

    return wrapper
