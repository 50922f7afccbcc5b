#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Offline check of l3kv-feedwatch (the feed benchmark's watcher client): a local server
sends each connection a stream of change events in pieces of 1 to 13 bytes (so patterns
are split between reads), then a reset event; the client's counts must equal what was
sent. No l3kv, no timing.

usage: test-feedwatch.py FEEDWATCH_BIN"""
import socket
import subprocess
import sys
import threading
import time

EVENTS, CONNS = 300, 3
EVENT = b"id: 0000000000000000000000000000002a\nevent: change\ndata: {\"key\":\"k\",\"op\":\"put\"}\n\n"
RESET = b"event: reset\ndata: {\"cursor\":\"00\"}\n\n"


def serve(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b""
        while b"\r\n\r\n" not in req:
            req += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        data = EVENT * EVENTS + RESET
        i, step = 0, 1
        while i < len(data):
            conn.sendall(data[i:i + step])
            i += step
            step = step % 13 + 1
            if i % 97 < 13:
                time.sleep(0.0005)  # let some pieces arrive as reads of their own


def main():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(CONNS)
    port = ls.getsockname()[1]
    threads = []

    def accept_all():
        for _ in range(CONNS):
            c, _ = ls.accept()
            t = threading.Thread(target=serve, args=(c,))
            t.start()
            threads.append(t)

    acc = threading.Thread(target=accept_all)
    acc.start()
    p = subprocess.Popen([sys.argv[1], str(port), str(CONNS), "feed=sse"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        print("feedwatch did not connect")
        return 1
    acc.join()
    for t in threads:
        t.join()
    time.sleep(0.3)  # the last bytes reach the client
    changes, resets, _cpu, still_open = (int(x) for x in p.communicate("stop\n", timeout=30)[0].split())
    want = (EVENTS * CONNS, CONNS, 0)
    got = (changes, resets, still_open)
    print("feedwatch counted changes/resets/open %s, sent %s" % (got, want))
    return 0 if got == want else 1


if __name__ == "__main__":
    sys.exit(main())
