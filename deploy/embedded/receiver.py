"""A demo webhook receiver: verifies each request's Standard Webhooks signature and prints it.

    python deploy/embedded/receiver.py --port 8001 --secret whsec_...

Verifies with ``--secret`` and, for listeners created later (on the command line
or in the web interface), with the secrets of the listeners whose URL is the
requested one, read from the listeners topic (``DURIAN_*`` settings). Answers 204
to a verified request, 401 to a bad signature, 400 to a bad body.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from durian import conf
from durian.exceptions import DurianError, SignatureError
from durian.listener_store import ListenerStore
from durian.signing import verify


def secrets_for(port: int, path: str) -> list[str]:
    """Secrets of the listeners that POST to this receiver's ``path`` (their current
    secret and those still in a rotation's grace)."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with ListenerStore(conf.load()) as store:
            table = store.read(timeout=10)
    except DurianError:
        return []
    return [s for lst in table.listeners.values() if lst.url == url for s in lst.signing_secrets()]


def make_handler(secret: str, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = dict(self.headers.items())
            try:
                try:
                    msg_id = verify(body, headers, [secret])
                except SignatureError:
                    msg_id = verify(body, headers, secrets_for(port, self.path) or [secret])
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
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.secret, args.port))
    print(f"receiver: listening on http://127.0.0.1:{args.port}/hooks", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
