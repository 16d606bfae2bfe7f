"""A minimal Matomo stand-in for client-side benchmarks: it counts the items of a bulk POST and
answers like Matomo when every item is valid. Run in its own process (`bulk_server()`), so the
benchmark's figures are MatoKit's side alone.

    python bench/_bulkserver.py   # prints its port, serves until terminated
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "5e" * 16  # sentinel, never a real token


class BulkCounter(BaseHTTPRequestHandler):
    """Answers a bulk POST like Matomo does when every item is valid."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count = len(json.loads(body).get("requests", []))
        answer = json.dumps({"status": "success", "tracked": count, "invalid": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> None:
    """Serve on a free loopback port (printed first) until terminated."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BulkCounter)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def bulk_server() -> Iterator[str]:
    """The stand-in in its own process (off the benchmark's core time); its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    serve()
