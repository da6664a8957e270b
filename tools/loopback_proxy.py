"""What the loopback proxies share (tests/faults/sqs_fault_proxy.py, tests/faults/tcp_proxy.py,
bench/delay_proxy.py): the loopback-only upstream check, the port file written atomically (the
harness polls for it), and a run that ends on SIGTERM, SIGINT or --max-seconds, whichever first.
"""
import asyncio
import ipaddress
import os
import signal
import time


def loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_upstream(upstream: str) -> bool:
    """HOST:PORT whose host is on the loopback: the proxies never forward anywhere else."""
    return ":" in upstream and loopback_host(upstream.rsplit(":", 1)[0])


def write_port(path: str, port: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)  # a reader never sees a half-written file


async def run_until_stopped(max_seconds: float, every: float = 0.0, on_tick=None) -> bool:
    """Waits for SIGTERM or SIGINT, at most max_seconds; calls on_tick every `every` seconds
    meanwhile (when both are given). True when it stopped because max_seconds ran out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + max_seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        if on_tick is not None:
            on_tick()
        try:
            await asyncio.wait_for(stop.wait(), min(left, every) if every > 0 else left)
        except asyncio.TimeoutError:
            pass
    return False
