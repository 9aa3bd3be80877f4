"""A tiny service for the `service:` tests: `tiny_service.py PORT CELL [MOCK_URL]`. Says what it
was given on stdout (the secret $TOKEN on stderr, which the harness must redact), answers GET
with 200, and misbehaves on request: $FAIL_CELL = a cell it exits 4 in before serving, $DIE_CELL
and $DIE_AFTER = a cell it exits 5 in after that many requests."""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cell = int(sys.argv[1]), sys.argv[2]
print(f"serving on {port} for cell {cell} mock {sys.argv[3:]}", flush=True)
print(f"token {os.environ.get('TOKEN', '')}", file=sys.stderr, flush=True)
if cell == os.environ.get("FAIL_CELL"):
    print("tiny: refusing to start for this cell", file=sys.stderr, flush=True)
    sys.exit(4)
served = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global served
        served += 1
        if cell == os.environ.get("DIE_CELL") and served > int(os.environ["DIE_AFTER"]):
            os._exit(5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
