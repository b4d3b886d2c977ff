#!/usr/bin/env python3
"""A tiny webhook receiver for the demo: verifies Standard Webhooks `v1` signatures with the
standard library only and prints each message. Usage: demo_receiver.py PORT WHSEC_SECRET"""
import base64, hashlib, hmac, http.server, json, sys, time

PORT, SECRET = int(sys.argv[1]), sys.argv[2]
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id, ts = self.headers["webhook-id"], self.headers["webhook-timestamp"]
        signed = f"{msg_id}.{ts}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
        ok = any(hmac.compare_digest(expected, s) for s in self.headers["webhook-signature"].split(" "))
        fresh = abs(time.time() - int(ts)) < 300
        verdict = "signature verified" if ok and fresh else "SIGNATURE INVALID"
        print(f"[demo receiver] {verdict}: webhook-id={msg_id} body={body.decode(errors='replace')}", flush=True)
        self.send_response(204 if ok and fresh else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
