"""A real HTTP receiver for webhook tests, and tasks run in-process on demand."""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config.celery import app

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A local HTTP server in a thread that records every request and answers with the
    queued statuses (then 200). `delay` seconds of silence before answering simulate a slow
    endpoint."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/console"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def private_networks_allowed(settings):
    """The receiver listens on 127.0.0.1, which production refuses (the SSRF guard): allowed
    here; the tests of the guard switch it back off."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def eager_tasks():
    """Tasks enqueued on commit run at once, in this process."""
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


def documented_verifier():
    """`verify_console_signature`, exactly as docs/webhooks.md prints it."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    [recipe] = [block for block in blocks if "def verify_console_signature" in block]
    namespace: dict = {}
    exec(recipe, namespace)
    return namespace["verify_console_signature"]
