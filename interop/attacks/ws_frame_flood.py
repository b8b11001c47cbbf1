#!/usr/bin/env python3
"""Issue 16, item 1, checked from outside: raw sockets that upgrade to WebSocket (WS and
WSS), send one masked binary frame header declaring 256 MiB, and stall. Prints the
relay's RSS before and after, and whether the relay closed each socket.

    interop/attacks/ws_frame_flood.py --pid <relay pid> --ws 127.0.0.1:14001 \
        --wss 127.0.0.1:24001 [--sockets 60] [--sources 127.0.0.2,127.0.0.3]

Loopback only. Stdlib only (ssl, socket), so it is a client this project does not ship.
"""
import argparse
import base64
import os
import socket
import ssl
import struct
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def upgraded(source, target, tls):
    host, port = target.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    sock = raw
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(raw, server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the upgrade")
        answer += chunk
    if b" 101 " not in answer.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"upgrade refused: {answer[:80]!r}")
    return sock


def stall_on_a_huge_frame(sock):
    # FIN + binary, masked, 64-bit length 256 MiB, mask key; then nothing.
    sock.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 256 << 20) + os.urandom(4))


def closed(sock, within):
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--wss", required=True)
    parser.add_argument("--sockets", type=int, default=60)
    parser.add_argument("--sources", default="127.0.0.2,127.0.0.3")
    args = parser.parse_args()
    sources = args.sources.split(",")
    before = rss_kib(args.pid)
    peak = before
    sockets = []
    for i in range(args.sockets):
        tls = i % 2 == 1
        sock = upgraded(sources[i % len(sources)], args.wss if tls else args.ws, tls)
        stall_on_a_huge_frame(sock)
        sockets.append(sock)
        peak = max(peak, rss_kib(args.pid))
    closed_count = sum(closed(s, 5.0) for s in sockets)
    peak = max(peak, rss_kib(args.pid))
    print(
        f"{args.sockets} stalled sockets (WS and WSS, from {args.sources}): "
        f"relay RSS {before / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB "
        f"(+{(peak - before) / 1024:.1f} MiB); closed by the relay: {closed_count}/{args.sockets}"
    )


if __name__ == "__main__":
    main()
