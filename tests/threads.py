"""Run a function in several threads at once (released together by a barrier), each with
its own database connection, and collect what they raised."""

import threading

from django.db import connection


def run_together(target, count: int) -> list[Exception]:
    """Call `target(index)` in `count` threads at once; return what they raised."""
    barrier, raised = threading.Barrier(count), []

    def body(index):
        try:
            barrier.wait()
            target(index)
        except Exception as error:
            raised.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return raised
