"""A demo webhook receiver: verifies each request's Standard Webhooks signature and prints it.

    python deploy/embedded/receiver.py --port 8001 --secret whsec_...

Answers 204 to a verified request, 401 to a bad signature, 400 to a bad body.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from durian.exceptions import SignatureError
from durian.signing import verify


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                msg_id = verify(body, dict(self.headers.items()), [secret])
            except SignatureError as exc:
                print(f"receiver: REJECTED ({exc})", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            try:
                payload = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            print(
                f"receiver: verified {payload['type']} {json.dumps(payload['data'])}  "
                f"(webhook-id {msg_id})",
                flush=True,
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.secret))
    print(f"receiver: listening on http://127.0.0.1:{args.port}/hooks", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
