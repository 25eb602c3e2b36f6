# An HTTP/1.1 server on 127.0.0.1:PORT (argv[1]) that keeps connections
# open (Python's own http.server speaks HTTP/1.0 and closes them), a
# thread per connection. Each answer counts the requests served so far,
# so that a client can tell the count went on across a checkpoint.
import http.server
import sys
import threading

served = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global served
        with lock:
            served += 1
            n = served
        body = f"request {n} path {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
