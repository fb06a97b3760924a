#!/usr/bin/env python3
"""A local S3 server for snapstore's remote tests and benchmarks: moto's S3 (in memory, from
PyPI: `pip install 'moto[server]'`), on 127.0.0.1 only.

Prints `http://127.0.0.1:PORT` on its first line once it serves, creates the buckets named by
--bucket, and exits when its standard input closes (so a test that dies takes it along).

moto checks If-Match / If-None-Match and then writes in two steps, and its server runs a thread
per request, so two conditional writes at once could both pass their check. This wrapper holds
one lock across every conditional write, which makes them atomic as on S3. For tests of stores
that do not do conditional writes: --conditional refuse answers them 501 NotImplemented (as
S3-compatible stores without the feature do), --conditional ignore drops the headers (as old
ones did, silently).
"""

import argparse
import os
import sys
import threading
import urllib.request

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

REFUSAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented"
    b"</Message><Header>If-None-Match</Header></Error>"
)


class ConditionalWrites:
    def __init__(self, app, mode):
        self.app = app
        self.mode = mode
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        conditional = "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
        if not conditional or environ.get("REQUEST_METHOD") not in ("PUT", "POST"):
            return self.app(environ, start_response)
        if self.mode == "refuse":
            start_response(
                "501 Not Implemented",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(REFUSAL)))],
            )
            return [REFUSAL]
        if self.mode == "ignore":
            environ.pop("HTTP_IF_MATCH", None)
            environ.pop("HTTP_IF_NONE_MATCH", None)
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bucket", action="append", default=[])
    p.add_argument("--conditional", choices=["atomic", "refuse", "ignore"], default="atomic")
    args = p.parse_args()
    app = ConditionalWrites(DomainDispatcherApplication(create_backend_app), args.conditional)
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=QuietHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for bucket in args.bucket:
        req = urllib.request.Request(f"{url}/{bucket}", method="PUT")
        urllib.request.urlopen(req).read()
    print(url, flush=True)
    # Serve until the parent closes our stdin (or dies).
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
