#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time, each way.

bench/e2e puts it between a consumer and fauxqs to mimic the round trip to real SQS: a request
reaches fauxqs DELAY ms after the client sent it, and the answer reaches the client DELAY ms after
fauxqs sent it, so each request/response pair costs 2 x DELAY more. Chunks are timestamped when
they arrive and forwarded in order once due, so the delay is latency, not a cap on throughput.

    bench/delay_proxy.py --upstream 127.0.0.1:PORT --delay-ms 15 --port-file FILE

It listens on 127.0.0.1 only (port 0 by default: the port it got is written to --port-file), only
forwards to a loopback upstream, and stops by itself after --max-seconds, on SIGTERM or on SIGINT.
"""
import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from loopback_proxy import loopback_upstream, run_until_stopped, write_port  # noqa: E402


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copies reader to writer, each chunk sent `delay` seconds after it was read, in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    async def pump_in() -> None:
        try:
            while True:
                data = await reader.read(1 << 16)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time(), b""))

    async def pump_out() -> None:
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    reader_task = asyncio.ensure_future(pump_in())
    try:
        await pump_out()
    finally:
        reader_task.cancel()


async def serve(args: argparse.Namespace) -> None:
    up_host, up_port = args.upstream.rsplit(":", 1)
    delay = args.delay_ms / 1000.0

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.wait_for(asyncio.open_connection(up_host, int(up_port)), 10)
        except (OSError, asyncio.TimeoutError) as e:
            print(f"delay_proxy: cannot reach {args.upstream}: {e}", file=sys.stderr)
            c_writer.close()
            return
        try:
            await asyncio.gather(forward(c_reader, u_writer, delay), forward(u_reader, c_writer, delay))
        finally:
            for w in (c_writer, u_writer):
                try:
                    w.close()
                except OSError:
                    pass

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        write_port(args.port_file, port)
    print(f"delay_proxy: 127.0.0.1:{port} -> {args.upstream}, +{args.delay_ms} ms each way", file=sys.stderr)

    if await run_until_stopped(args.max_seconds):
        print(f"delay_proxy: stopping after --max-seconds {args.max_seconds}", file=sys.stderr)
    server.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to (loopback only)")
    p.add_argument("--delay-ms", type=float, default=15.0, help="delay added to each chunk, each way (default 15)")
    p.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: a free one)")
    p.add_argument("--port-file", help="write the port listened on to this file once ready")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long (default 3600)")
    args = p.parse_args()
    if not loopback_upstream(args.upstream):
        p.error("--upstream must be HOST:PORT on the loopback (127.0.0.0/8, ::1 or localhost)")
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
