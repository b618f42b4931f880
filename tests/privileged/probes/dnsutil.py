# SPDX-License-Identifier: Apache-2.0
"""A DNS server and client for the dns probe's tests, stdlib sockets and hand-built messages.

The server answers by the query name's first label: ``ok`` NOERROR, ``nx`` NXDOMAIN, ``fail``
SERVFAIL, ``refuse`` REFUSED, ``notimp`` NOTIMP (rcode 4), ``slow`` NOERROR after 300 ms,
``silent`` never; over UDP and TCP (2-byte length prefix, RFC 1035 4.2.2) on port 53.
The client sends each query of a list, one after the other, and prints what came back.
"""

from __future__ import annotations

SERVER = r"""
import socket, struct, threading, time
RCODES = {{b"ok": 0, b"nx": 3, b"fail": 2, b"refuse": 5, b"notimp": 4, b"slow": 0}}

def answer(msg):
    label = msg[13:13 + msg[12]]
    if label == b"silent":
        return None
    if label == b"slow":
        time.sleep(0.3)
    tid, flags = struct.unpack("!HH", msg[:4])
    flags = 0x8000 | (flags & 0x0100) | 0x0080 | RCODES[label]
    return struct.pack("!HHHHHH", tid, flags, 1, 0, 0, 0) + msg[12:]

family = socket.AF_INET6 if ":" in {host!r} else socket.AF_INET
udp = socket.socket(family, socket.SOCK_DGRAM)
udp.bind(({host!r}, 53))
tcp = socket.create_server(({host!r}, 53), family=family)

def serve_udp():
    while True:
        msg, peer = udp.recvfrom(512)
        reply = answer(msg)
        if reply:
            udp.sendto(reply, peer)

def recv_exactly(c, n):
    data = b""
    while len(data) < n:
        more = c.recv(n - len(data))
        if not more:
            return None
        data += more
    return data

def serve_conn(c):
    with c:
        while True:
            head = recv_exactly(c, 2)
            if head is None:
                return
            reply = answer(recv_exactly(c, struct.unpack("!H", head)[0]))
            if reply:
                c.sendall(struct.pack("!H", len(reply)) + reply)

def serve_tcp():
    while True:
        c, _ = tcp.accept()
        threading.Thread(target=serve_conn, args=(c,), daemon=True).start()

threading.Thread(target=serve_udp, daemon=True).start()
threading.Thread(target=serve_tcp, daemon=True).start()
print("ready", flush=True)
time.sleep(120)
"""

CLIENT = r"""
import socket, struct
queries = {queries!r}  # [(name, transport)]
for i, (name, transport) in enumerate(queries):
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    msg = struct.pack("!HHHHHH", 0x1000 + i, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    try:
        if transport == "udp":
            s = socket.socket(socket.AF_INET6 if ":" in {server!r} else socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout({wait})
            s.sendto(msg, ({server!r}, 53))
            reply = s.recvfrom(512)[0]
        else:
            s = socket.create_connection(({server!r}, 53), timeout={wait})
            s.sendall(struct.pack("!H", len(msg)) + msg)
            reply = s.recv(514)[2:]
        assert struct.unpack("!H", reply[:2])[0] == 0x1000 + i
        print(name, transport, reply[3] & 0x0f, flush=True)
    except TimeoutError:
        print(name, transport, "timeout", flush=True)
    s.close()
"""
