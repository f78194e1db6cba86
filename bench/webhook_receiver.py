#!/usr/bin/env python3
"""A webhook receiver for measurements (stdlib only): answers every POST with 204 and counts them.

  bench/webhook_receiver.py PORT        prints the count every 10 s to stderr

Used with bench/compare.sh to measure verify throughput with a receiver configured:

  bench/webhook_receiver.py 18299 &
  TWOFOLD_WEBHOOK_URL=http://127.0.0.1:18299/hook \\
  TWOFOLD_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw TARGETS=twofold bench/compare.sh
"""
import http.server, sys, threading, time

COUNT = 0


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global COUNT
        self.rfile.read(int(self.headers.get("content-length", 0)))
        COUNT += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def report():
    while True:
        time.sleep(10)
        print(f"webhook_receiver: {COUNT} events received", file=sys.stderr, flush=True)


threading.Thread(target=report, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
