"""moto's DynamoDB server for the tests, answering one request at a time.

moto applies a TransactWriteItems action by action and, on a failed condition, restores a copy
of the whole table taken when the call began. Its own server (`moto_server`) handles requests
on several threads at once, so two concurrent transactions can both pass their conditions, and
a rollback can undo another call's writes: it has none of DynamoDB's isolation. Serialized, each
call runs alone, as DynamoDB's transactions appear to. Connections stay concurrent (threads and
keep-alive); only the handling of requests is one at a time.

Usage: python moto_server.py HOST PORT
"""

import os
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # The whole answer is built under the lock.
            return [b"".join(app(environ, start_response))]

    run_simple(host, port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
