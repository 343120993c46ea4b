#!/usr/bin/env python3
"""A tiny loopback relay for cross/smoke (Python 3 standard library only).

Listens on 127.0.0.1 (a free port unless --port is given), accepts the daemon's
WebSocket upgrade on /ws/node, answers `node.registered`, waits for a text frame
`{"type":"node.heartbeat",...}` and acknowledges it, answers pings and the closing
handshake. It never connects anywhere.

Protocol with the caller (cross/smoke), one line each on stdout, flushed:
    PORT <n>             listening
    CONNECTED <path>     a WebSocket upgrade was accepted (token not shown)
    HEARTBEAT            the first node.heartbeat arrived (also: --ready-file is created)
    CLOSE <code>         the daemon sent a close frame (a polite shutdown)
    EOF                  the connection ended
Exit status: 0 if a heartbeat arrived, 1 otherwise (timeout, bad upgrade, wrong token).
"""

import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(sock):
    """One frame: (fin, opcode, payload). Client frames must be masked."""
    b0, b1 = recv_exact(sock, 2)
    fin, opcode = b0 & 0x80, b0 & 0x0F
    masked, length = b1 & 0x80, b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exact(sock, 8))
    if not masked:
        raise ValueError("unmasked client frame")
    mask = recv_exact(sock, 4)
    data = bytearray(recv_exact(sock, length))
    for i in range(length):
        data[i] ^= mask[i & 3]
    return bool(fin), opcode, bytes(data)


def send_frame(sock, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    sock.sendall(head + payload)


def send_json(sock, obj):
    send_frame(sock, 0x1, json.dumps(obj).encode())


def handshake(conn, token):
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        raw += chunk
        if len(raw) > 65536:
            raise ValueError("request head too large")
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query)
    ok = (
        method == "GET"
        and url.path.endswith("/ws/node")
        and headers.get("upgrade", "").lower() == "websocket"
        and "sec-websocket-key" in headers
    )
    if ok and token is not None and query.get("token", [None])[0] != token:
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        say("REJECTED bad token")
        return None
    if not ok:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        say("REJECTED " + url.path)
        return None
    accept = base64.b64encode(
        hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
    ).decode()
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    return url.path


def serve_one(conn, args, state):
    path = handshake(conn, args.token)
    if path is None:
        return
    say("CONNECTED " + path)
    send_json(conn, {"v": 2, "id": "reg", "ts": int(time.time() * 1000),
                     "type": "node.registered", "payload": {}})
    message = b""
    while True:
        fin, opcode, data = read_frame(conn)
        if opcode == 0x8:  # close: echo the code back, then the daemon closes TCP
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            say(f"CLOSE {code}")
            try:
                send_frame(conn, 0x8, data[:2])
            except OSError:
                pass
            return
        if opcode == 0x9:
            send_frame(conn, 0xA, data)
            continue
        if opcode in (0x1, 0x0):
            message += data
            if not fin:
                continue
            text, message = message.decode("utf-8"), b""
            try:
                frame = json.loads(text)
            except ValueError:
                say("BADJSON " + text[:80])
                continue
            if isinstance(frame, dict) and frame.get("type") == "node.heartbeat":
                if not state["heartbeat"]:
                    state["heartbeat"] = True
                    if args.ready_file:
                        with open(args.ready_file, "w") as f:
                            f.write("heartbeat\n")
                    say("HEARTBEAT")
                send_json(conn, {"v": 2, "id": "ack", "ts": int(time.time() * 1000),
                                 "type": "node.heartbeat_ack", "payload": {}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", help="the node token the upgrade must carry")
    ap.add_argument("--ready-file", help="created when the first heartbeat arrives")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = ap.parse_args()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(4)
    say(f"PORT {srv.getsockname()[1]}")
    deadline = time.monotonic() + args.timeout
    state = {"heartbeat": False}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            say("TIMEOUT")
            break
        srv.settimeout(left)
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            say("TIMEOUT")
            break
        conn.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            serve_one(conn, args, state)
        except (EOFError, ConnectionError, socket.timeout, ValueError) as e:
            if not isinstance(e, EOFError):
                say(f"ERROR {type(e).__name__}: {e}")
        finally:
            say("EOF")
            conn.close()
        # A daemon that said goodbye after its heartbeat is done; stop serving.
        if state["heartbeat"]:
            break
    srv.close()
    return 0 if state["heartbeat"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(1)
