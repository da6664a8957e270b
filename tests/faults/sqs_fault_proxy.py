#!/usr/bin/env python3
"""An HTTP/1.1 proxy on 127.0.0.1 in front of an SQS endpoint speaking AWS JSON 1.0 (fauxqs,
moto), that injects the faults real SQS shows, at configurable rates, reproducibly (seeded).

    tests/faults/sqs_fault_proxy.py --upstream 127.0.0.1:PORT --port-file FILE \
        --rate error=0.05 --rate throttle=0.05 --rate drop=0.05 --rate lost=0.05 \
        --rate stall=0.01 --rate partial=0.2 --seed 7 --stats-file stats.json

Faults (each request draws once; the operation is named by the X-Amz-Target header):

  error     HTTP 500 {"__type":"com.amazon.coral.service#InternalFailure"} or 503
            ServiceUnavailable (x-amzn-query-error: ...;Receiver); nothing is forwarded.
  throttle  nothing is forwarded; one of the two throttling answers AWS gives:
              - HTTP 400 {"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}
                with x-amzn-query-error: ThrottlingException;Sender (the service front end's);
              - HTTP 403 {"__type":"com.amazonaws.sqs#RequestThrottled",...} with
                x-amzn-query-error: RequestThrottled;Sender (the modeled SQS error: the Smithy
                model gives RequestThrottled httpError 403 and awsQueryError code RequestThrottled).
  drop      the connection is closed without an answer; nothing is forwarded.
  lost      the request is forwarded (it takes effect: messages received become invisible,
            deletes happen), then the connection is closed without an answer.
  stall     the connection is held without an answer for --stall-seconds (default 30), then
            closed; nothing is forwarded. The client must give up on it by itself.
  partial   batch calls only (DeleteMessageBatch, ChangeMessageVisibilityBatch,
            SendMessageBatch): a random non-empty proper subset of the entries is forwarded;
            the others come back in Failed as {Id, Code: "InternalError", SenderFault: false,
            Message}. Nothing is injected when the batch has a single entry.
  slow      the answer is forwarded after --slow-ms (default 2000) more milliseconds.

Rates are probabilities per request (they must add up to at most 1; `partial` is drawn only for
batch calls). `--ops` limits faults to some operations (default: every operation). `--after N`
lets the first N requests through untouched (start-up: GetQueueUrl, GetQueueAttributes).
Injected counts per fault and operation go to --stats-file (JSON) every second and at exit.
A control port (--control-port-file) takes one-line commands: `off`, `on`, `rate NAME=P`, `stats`.

Loopback only: it listens on 127.0.0.1 and refuses a non-loopback upstream. It stops by itself
after --max-seconds, on SIGTERM or on SIGINT.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "tools"))
from loopback_proxy import loopback_upstream, run_until_stopped, write_port  # noqa: E402

FAULTS = ("error", "throttle", "drop", "lost", "stall", "partial", "slow")
BATCH_OPS = ("DeleteMessageBatch", "ChangeMessageVisibilityBatch", "SendMessageBatch")
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error",
           503: "Service Unavailable"}


class Request:
    def __init__(self, start: bytes, headers: list, body: bytes):
        self.start = start
        self.headers = headers  # [(name, value)] as bytes, order kept
        self.body = body

    def header(self, name: str):
        name = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return None

    def encode(self, body: bytes = None) -> bytes:
        body = self.body if body is None else body
        out = [self.start]
        for k, v in self.headers:
            if k.lower() in (b"content-length", b"transfer-encoding"):
                continue
            out.append(k + b": " + v)
        out.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(out) + b"\r\n\r\n" + body


async def read_head(reader: asyncio.StreamReader):
    """Start line and headers, or None at a clean EOF."""
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise ConnectionError("truncated HTTP head")
    lines = data[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


async def read_body(reader: asyncio.StreamReader, headers: list) -> bytes:
    h = {k.lower(): v for k, v in headers}
    if h.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    n = int(h.get(b"content-length", b"0"))
    return await reader.readexactly(n) if n else b""


async def read_request(reader):
    head = await read_head(reader)
    if head is None:
        return None
    start, headers = head
    return Request(start, headers, await read_body(reader, headers))


async def read_response(reader):
    head = await read_head(reader)
    if head is None:
        raise ConnectionError("upstream closed")
    start, headers = head
    body = await read_body(reader, headers)
    return start, headers, body


def encode_response(status: int, body: bytes, extra=(), keep_alive=True) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}".encode(),
             b"Content-Type: application/x-amz-json-1.0",
             b"x-amzn-RequestId: " + os.urandom(8).hex().encode(),
             b"Content-Length: " + str(len(body)).encode()]
    if not keep_alive:
        lines.append(b"Connection: close")
    for k, v in extra:
        lines.append(k.encode() + b": " + v.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def reencode_response(start, headers, body) -> bytes:
    out = [start]
    for k, v in headers:
        if k.lower() in (b"content-length", b"transfer-encoding"):
            continue
        out.append(k + b": " + v)
    out.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(out) + b"\r\n\r\n" + body


class Proxy:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.rates = dict(args.rates)
        self.enabled = True
        self.requests = 0
        self.stats = {"requests": 0, "forwarded": 0, "injected": {}, "by_op": {}}
        self.up_host, up_port = args.upstream.rsplit(":", 1)
        self.up_port = int(up_port)

    def count(self, fault: str, op: str) -> None:
        self.stats["injected"][fault] = self.stats["injected"].get(fault, 0) + 1
        per = self.stats["by_op"].setdefault(op, {})
        per[fault] = per.get(fault, 0) + 1

    def choose(self, op: str, n_entries: int):
        self.requests += 1
        self.stats["requests"] += 1
        self.stats["last_request_unix"] = round(time.time(), 3)
        if not self.enabled or self.requests <= self.args.after:
            return None
        if self.args.ops and op not in self.args.ops:
            return None
        x = self.rng.random()
        acc = 0.0
        for fault in FAULTS:
            p = self.rates.get(fault, 0.0)
            if fault == "partial" and (op not in BATCH_OPS or n_entries < 2):
                continue
            acc += p
            if x < acc:
                return fault
        return None

    def write_stats(self) -> None:
        if not self.args.stats_file:
            return
        tmp = self.args.stats_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({**self.stats, "rates": self.rates, "enabled": self.enabled}, f, sort_keys=True)
        os.replace(tmp, self.args.stats_file)

    # -- one client connection ----------------------------------------------------------------

    async def handle(self, c_reader, c_writer):
        up = None  # (reader, writer) to the upstream, kept alive like the client's connection

        async def upstream():
            nonlocal up
            if up is None:
                up = await asyncio.wait_for(asyncio.open_connection(self.up_host, self.up_port), 10)
            return up

        async def exchange(raw: bytes):
            nonlocal up
            for attempt in (0, 1):  # a kept-alive upstream connection may have been closed meanwhile
                r, w = await upstream()
                try:
                    w.write(raw)
                    await w.drain()
                    return await read_response(r)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    w.close()
                    up = None
                    if attempt:
                        raise

        try:
            while True:
                req = await read_request(c_reader)
                if req is None:
                    return
                target = req.header("x-amz-target") or ""
                op = target.rsplit(".", 1)[-1] if target else "?"
                entries = None
                if op in BATCH_OPS:
                    try:
                        entries = json.loads(req.body).get("Entries") or []
                    except ValueError:
                        entries = None
                fault = self.choose(op, len(entries or []))
                if fault:
                    self.count(fault, op)
                if fault == "error":
                    if self.rng.random() < 0.5:
                        body = b'{"__type":"com.amazon.coral.service#InternalFailure","message":"injected"}'
                        c_writer.write(encode_response(500, body, [("x-amzn-query-error", "InternalFailure;Receiver")]))
                    else:
                        body = b'{"__type":"com.amazonaws.sqs#ServiceUnavailable","message":"injected"}'
                        c_writer.write(encode_response(503, body, [("x-amzn-query-error", "ServiceUnavailable;Receiver")]))
                    await c_writer.drain()
                    continue
                if fault == "throttle":
                    if self.rng.random() < 0.5:
                        body = b'{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}'
                        c_writer.write(encode_response(400, body, [("x-amzn-query-error", "ThrottlingException;Sender")]))
                    else:
                        body = b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Rate exceeded"}'
                        c_writer.write(encode_response(403, body, [("x-amzn-query-error", "RequestThrottled;Sender")]))
                    await c_writer.drain()
                    continue
                if fault == "drop":
                    return
                if fault == "stall":
                    await asyncio.sleep(self.args.stall_seconds)
                    return
                if fault == "partial" and entries:
                    k = self.rng.randint(1, len(entries) - 1)
                    keep = self.rng.sample(range(len(entries)), k)
                    kept = [entries[i] for i in sorted(keep)]
                    dropped = [entries[i] for i in range(len(entries)) if i not in keep]
                    doc = json.loads(req.body)
                    doc["Entries"] = kept
                    start, headers, body = await exchange(req.encode(json.dumps(doc).encode()))
                    self.stats["forwarded"] += 1
                    try:
                        answer = json.loads(body)
                    except ValueError:
                        answer = None
                    if start.split(b" ")[1] == b"200" and isinstance(answer, dict):
                        answer.setdefault("Failed", [])
                        answer.setdefault("Successful", [])
                        for e in dropped:
                            answer["Failed"].append({"Id": e.get("Id"), "Code": "InternalError", "SenderFault": False,
                                                     "Message": "injected: entry not processed"})
                        body = json.dumps(answer).encode()
                    c_writer.write(reencode_response(start, headers, body))
                    await c_writer.drain()
                    continue
                start, headers, body = await exchange(req.encode())
                self.stats["forwarded"] += 1
                if fault == "lost":
                    return
                if fault == "slow":
                    await asyncio.sleep(self.args.slow_ms / 1000.0)
                c_writer.write(reencode_response(start, headers, body))
                await c_writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError,
                asyncio.TimeoutError, ValueError):
            return
        finally:
            for w in (c_writer, up[1] if up else None):
                if w is not None:
                    try:
                        w.close()
                    except OSError:
                        pass

    # -- control --------------------------------------------------------------------------------

    async def control(self, reader, writer):
        try:
            line = (await reader.readline()).decode().strip()
            words = line.split()
            reply = "ok"
            if words == ["off"]:
                self.enabled = False
            elif words == ["on"]:
                self.enabled = True
            elif len(words) == 2 and words[0] == "rate" and "=" in words[1]:
                name, value = words[1].split("=", 1)
                if name not in FAULTS:
                    reply = f"error: unknown fault {name}"
                else:
                    self.rates[name] = float(value)
            elif words == ["stats"]:
                reply = json.dumps({**self.stats, "rates": self.rates, "enabled": self.enabled}, sort_keys=True)
            else:
                reply = "error: commands are off, on, rate NAME=P, stats"
            self.write_stats()
            writer.write((reply + "\n").encode())
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(args) -> None:
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, limit=1 << 22)
    port = server.sockets[0].getsockname()[1]
    ctl = None
    if args.control_port_file:
        ctl = await asyncio.start_server(proxy.control, "127.0.0.1", 0)
        write_port(args.control_port_file, ctl.sockets[0].getsockname()[1])
    if args.port_file:
        write_port(args.port_file, port)
    print(f"sqs_fault_proxy: 127.0.0.1:{port} -> {args.upstream}, rates {proxy.rates}, seed {args.seed}",
          file=sys.stderr, flush=True)
    await run_until_stopped(args.max_seconds, every=1.0, on_tick=proxy.write_stats)
    proxy.write_stats()
    server.close()
    if ctl:
        ctl.close()


def parse_rate(text: str):
    name, sep, value = text.partition("=")
    if not sep or name not in FAULTS:
        raise argparse.ArgumentTypeError(f"expected NAME=P with NAME one of {', '.join(FAULTS)}: {text}")
    p = float(value)
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1: {text}")
    return name, p


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT of the SQS endpoint (loopback only)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--port-file", help="write the port listened on to this file once ready")
    p.add_argument("--control-port-file", help="listen for control commands too; write that port here")
    p.add_argument("--rate", dest="rates", action="append", type=parse_rate, default=[], metavar="NAME=P",
                   help=f"fault rate per request, NAME one of {', '.join(FAULTS)} (repeat)")
    p.add_argument("--ops", type=lambda s: [x for x in s.split(",") if x], default=[],
                   help="comma-separated operations to inject into (default all)")
    p.add_argument("--after", type=int, default=0, help="let the first N requests through untouched")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--stall-seconds", type=float, default=30.0, help="how long a stall holds (default 30)")
    p.add_argument("--slow-ms", type=float, default=2000.0, help="delay of a slow answer (default 2000)")
    p.add_argument("--stats-file", help="JSON counts of what was injected, rewritten every second")
    p.add_argument("--max-seconds", type=float, default=7200.0, help="stop by itself after this long")
    args = p.parse_args()
    if not loopback_upstream(args.upstream):
        p.error("--upstream must be HOST:PORT on the loopback")
    total = sum(v for k, v in args.rates if k != "partial")
    if total > 1:
        p.error("the rates of the faults other than partial add up to more than 1")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
