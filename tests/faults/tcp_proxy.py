#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that can be told to stop forwarding: a host that stops answering.

    tests/faults/tcp_proxy.py --upstream 127.0.0.1:PORT --port-file FILE --control-port-file CFILE

Control: connect to the control port and send one line; the answer is one line.

  blackhole   stop forwarding in both directions, on every connection, old and new: sockets stay
              open, bytes are neither passed on nor answered (new connections are accepted and held)
  freeze      like blackhole, but only for the connections open now; new connections are forwarded
              (a dead host behind an address that now leads to a live one)
  resume      forward again; bytes held meanwhile are passed on, in order
  reset       close every open connection at once (RST)
  stats       {"connections": ..., "open": ..., "mode": ...}

Caveat, on purpose: the proxy's kernel still ACKs what the client sends and answers its TCP
keepalive probes, so from the client's side this is a peer whose host is up but whose server does
not answer (a hung server, a stuck COMMIT), not a cut cable. Only a deadline in the client itself
(or a server-side timeout) gets it out; TCP keepalives and TCP_USER_TIMEOUT do not fire.

Loopback only. It stops by itself after --max-seconds, on SIGTERM or on SIGINT.
"""
import argparse
import asyncio
import json
import os
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "tools"))
from loopback_proxy import loopback_upstream, run_until_stopped, write_port  # noqa: E402


class Conn:
    def __init__(self, proxy, c_writer):
        self.proxy = proxy
        self.frozen = proxy.mode == "blackhole"
        self.gate = asyncio.Event()
        if not self.frozen:
            self.gate.set()
        self.writers = [c_writer]

    def freeze(self):
        self.frozen = True
        self.gate.clear()

    def thaw(self):
        self.frozen = False
        self.gate.set()

    def reset(self):
        for w in self.writers:
            try:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.close()
            except OSError:
                pass


class Proxy:
    def __init__(self, args):
        self.args = args
        self.mode = "forward"
        self.conns = set()
        self.total = 0
        self.up_host, port = args.upstream.rsplit(":", 1)
        self.up_port = int(port)

    async def pipe(self, conn, reader, writer):
        try:
            while True:
                data = await reader.read(1 << 16)
                await conn.gate.wait()  # held while frozen; passed on in order afterwards
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    async def handle(self, c_reader, c_writer):
        self.total += 1
        conn = Conn(self, c_writer)
        self.conns.add(conn)
        try:
            await conn.gate.wait()  # a connection made during a blackhole does not reach upstream
            try:
                u_reader, u_writer = await asyncio.wait_for(asyncio.open_connection(self.up_host, self.up_port), 10)
            except (OSError, asyncio.TimeoutError):
                conn.reset()
                return
            conn.writers.append(u_writer)
            a = asyncio.ensure_future(self.pipe(conn, c_reader, u_writer))
            b = asyncio.ensure_future(self.pipe(conn, u_reader, c_writer))
            done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            if not conn.frozen:
                # one side finished; let the other finish too (half-close), bounded
                try:
                    await asyncio.wait_for(asyncio.gather(*pending), 30)
                except asyncio.TimeoutError:
                    pass
            else:
                await conn.gate.wait()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self.conns.discard(conn)
            for w in conn.writers:
                try:
                    w.close()
                except OSError:
                    pass

    async def control(self, reader, writer):
        try:
            cmd = (await reader.readline()).decode().strip()
            reply = "ok"
            if cmd == "blackhole":
                self.mode = "blackhole"
                for c in self.conns:
                    c.freeze()
            elif cmd == "freeze":
                for c in self.conns:
                    c.freeze()
            elif cmd == "resume":
                self.mode = "forward"
                for c in list(self.conns):
                    c.thaw()
            elif cmd == "reset":
                for c in list(self.conns):
                    c.reset()
            elif cmd == "stats":
                reply = json.dumps({"connections": self.total, "open": len(self.conns), "mode": self.mode,
                                    "frozen": sum(1 for c in self.conns if c.frozen)})
            else:
                reply = "error: commands are blackhole, freeze, resume, reset, stats"
            print(f"tcp_proxy: {cmd} -> {reply}", file=sys.stderr, flush=True)
            writer.write((reply + "\n").encode())
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(args):
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port)
    ctl = await asyncio.start_server(proxy.control, "127.0.0.1", 0)
    if args.control_port_file:
        write_port(args.control_port_file, ctl.sockets[0].getsockname()[1])
    if args.port_file:
        write_port(args.port_file, server.sockets[0].getsockname()[1])
    print(f"tcp_proxy: 127.0.0.1:{server.sockets[0].getsockname()[1]} -> {args.upstream}", file=sys.stderr, flush=True)
    await run_until_stopped(args.max_seconds)
    server.close()
    ctl.close()
    for c in list(proxy.conns):
        c.reset()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to (loopback only)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--control-port-file")
    p.add_argument("--max-seconds", type=float, default=7200.0)
    args = p.parse_args()
    if not loopback_upstream(args.upstream):
        p.error("--upstream must be HOST:PORT on the loopback")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
