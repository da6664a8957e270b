#!/usr/bin/env python3
"""Fault-injection scenarios for sqs2pg against real servers (issue 7).

    tests/faults/faults.py list
    tests/faults/faults.py run [--quick] [--runs K] [--seed S] NAME...   # or `all`
    tests/faults/faults.py run soak                                      # make soak

Every scenario starts from a private stack (`scripts/stack up --dir <tmp>`: PostgreSQL + fauxqs
on free loopback ports; `scripts/stack down` always runs at the end, also on failure or Ctrl-C),
makes a key with `sqs2pg keygen`, fills a fresh queue with N generated messages (NDJSON, every
user_id unique, a few invalid by construction), runs build/sqs2pg with a fault injected, and then
asserts the outcome against the servers themselves:

  - every run ended by itself (bounded by a timeout; a hang is a failure) with the exit status
    the contract gives;
  - exactly once: rows in <table> = valid messages, rows in <table>_rejects = invalid ones,
    no user_id twice, <table>_ledger = N, and the queue empty (visible + in flight = 0).

Each scenario prints one line `RESULT <name>: PASS|FAIL | faults ... | runs ... | outcome ... | N s`
and the runner writes them, with the command that reproduces each, to --report (Markdown).
Exit status: 0 when every scenario passed, 1 otherwise.

Run it with python3 (pyenv's, with boto3); it needs psql and, for `failover`, pg_autoctl
(Debian package postgresql-15-auto-failover: `scripts/install-deps --faults`).
"""
import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

SUMMARY_RE = re.compile(
    r"received (\d+), loaded (\d+), duplicates skipped (\d+), rejected (\d+), deleted (\d+)")


def log(msg: str) -> None:
    print(f"faults: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_file(path: Path, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise Failed(f"{what}: {path} did not appear in {timeout:.0f} s")


def wait_until(pred, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


# ---------------------------------------------------------------------------------------------
# Messages: NDJSON, user_id "<tag>-<i>" so a row loaded twice shows as a repeated user_id (with
# --mapping orders: orders whose customer.id is "<tag>-<i>", loaded by examples/orders.toml).


def write_orders(path: Path, n: int, tag: str, seed: int, invalid_every: int = 50) -> dict:
    """Orders as examples/orders.toml reads them (issue 18: the faults with a non-login mapping).
    customer.id is unique per message, so counting it distinct finds a row loaded twice. Every
    invalid_every-th order is invalid by construction (no id / a fractional amount / not JSON)."""
    rng = random.Random(seed)
    invalid = 0
    with open(path, "w") as f:
        for i in range(n):
            m = {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "status": rng.choice(("paid", "shipped")),
                "customer": {"id": f"{tag}-{i:07d}", "email": f"c{i}@example.com"},
                "client": {"ip": ".".join(str(rng.randint(0, 255)) for _ in range(4))},
                "total_cents": rng.randint(100, 10**7),
                "items": [{"sku": f"S-{rng.randint(0, 99)}", "qty": rng.randint(1, 5)}],
                "item_count": rng.randint(1, 5),
                "placed_at": "2026-12-05T01:02:03.456Z",
                "gift": rng.random() < 0.1,
            }
            if invalid_every and i % invalid_every == invalid_every - 1:
                invalid += 1
                kind = (i // invalid_every) % 3
                if kind == 0:
                    del m["id"]
                elif kind == 1:
                    m["total_cents"] = 1.5
                else:
                    f.write(json.dumps(m)[:25] + "\n")
                    continue
            f.write(json.dumps(m) + "\n")
    return {"n": n, "valid": n - invalid, "invalid": invalid}


def write_messages(path: Path, n: int, tag: str, seed: int, invalid_every: int = 50, poison=()) -> dict:
    """Returns {"n", "valid", "invalid"}. Every invalid_every-th message is invalid by
    construction (missing ip / bad ip / not JSON, in turn). `poison` maps an index to a user_id
    that is valid for sqs2pg but that the table refuses."""
    rng = random.Random(seed)
    invalid = 0
    poison = dict(poison)
    with open(path, "w") as f:
        for i in range(n):
            m = {
                "user_id": poison.get(i, f"{tag}-{i:07d}"),
                "app_version": f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
                "device_type": rng.choice(("android", "ios")),
                "ip": ".".join(str(rng.randint(0, 255)) for _ in range(4)),
                "locale": rng.choice(("US", "DE", "PH", None)),
                "device_id": f"{rng.randint(0, 999):03d}-{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}",
            }
            if invalid_every and i % invalid_every == invalid_every - 1 and i not in poison:
                invalid += 1
                kind = (i // invalid_every) % 3
                if kind == 0:
                    del m["ip"]
                elif kind == 1:
                    m["ip"] = "999.1.2.3"
                else:
                    f.write(json.dumps(m)[:25] + "\n")
                    continue
            f.write(json.dumps(m) + "\n")
    return {"n": n, "valid": n - invalid, "invalid": invalid}


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """A child process with its output in files, killed on the way out if still running."""

    live = set()

    def __init__(self, cmd, env, out: Path, err: Path, name: str):
        self.cmd = [str(c) for c in cmd]
        self.name = name
        self.out_path, self.err_path = out, err
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.cmd, env=env, stdout=open(out, "w"), stderr=open(err, "w"),
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.rc = None
        self.t_end = None
        Proc.live.add(self)

    @property
    def pid(self):
        return self.p.pid

    def poll(self):
        if self.rc is None:
            rc = self.p.poll()
            if rc is not None:
                self.rc, self.t_end = rc, time.monotonic()
                Proc.live.discard(self)
        return self.rc

    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float):
        """Exit status, or None when it did not end in time (then it is killed)."""
        try:
            self.p.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def signal(self, sig):
        if self.running():
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        if self.running():
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
            self.poll()

    def seconds(self) -> float:
        return (self.t_end or time.monotonic()) - self.t0

    def summary(self):
        try:
            m = SUMMARY_RE.search(self.out_path.read_text())
        except OSError:
            return None
        return dict(zip(("received", "loaded", "duplicates", "rejected", "deleted"), map(int, m.groups()))) if m else None

    def err_tail(self, n=4) -> str:
        try:
            lines = [x for x in self.err_path.read_text().splitlines() if x.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])[-600:]

    @classmethod
    def kill_all(cls):
        for p in list(cls.live):
            p.kill()


def run(cmd, env=None, timeout=60, check=True, what=None, user=None):
    if user and os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--"] + [str(c) for c in cmd]
    try:
        p = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failed(f"{what or cmd[0]}: timed out after {timeout} s: {shlex.join(map(str, cmd))}")
    if check and p.returncode != 0:
        raise Failed(f"{what or cmd[0]}: exit {p.returncode}: {shlex.join(map(str, cmd))}: "
                     f"{(p.stderr or p.stdout).strip()[-800:]}")
    return p


def pg_bin() -> Path:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        raise Failed("PostgreSQL server binaries not found: run scripts/install-deps")
    return bins[-1]


# ---------------------------------------------------------------------------------------------
# The stack and the helpers every scenario shares


class Stack:
    def __init__(self, base: Path, binary: Path, mapping=None):
        self.dir = base / "stack"
        self.base = base
        self.bin = binary
        self.mapping = mapping
        self.env = None
        self.sqs = None
        self.pg_up = True

    def up(self):
        p = run([ROOT / "scripts/stack", "up", "--dir", self.dir], timeout=180, what="scripts/stack up")
        env_file = p.stdout.strip().splitlines()[-1]
        env = dict(os.environ)
        for line in Path(env_file).read_text().splitlines():
            if line.startswith("export "):
                for kv in shlex.split(line[len("export "):]):
                    k, _, v = kv.partition("=")
                    env[k] = v
        env.pop("SQS2PG_KEYS", None)
        env.pop("SQS2PG_KEY_FILE", None)
        self.env = env
        self.pg_port = int(env["PGPORT"])
        self.fauxqs = env["AWS_ENDPOINT_URL_SQS"]
        import boto3  # noqa: deferred so `list` works without it
        self.sqs = boto3.client("sqs", endpoint_url=self.fauxqs, region_name="us-east-1",
                                aws_access_key_id="test", aws_secret_access_key="test")
        self.key = self.base / "key"
        run([self.bin, "keygen", "--out", self.key], env=env, what="sqs2pg keygen")
        if self.mapping:
            # examples/orders.toml masks client_ip with cryptopan.
            run([self.bin, "keygen", "--out", self.key, "--rotate", "--ip-mask", "cryptopan"], env=env,
                what="sqs2pg keygen --rotate")

    def down(self):
        run([ROOT / "scripts/stack", "down", "--dir", self.dir], timeout=120, check=False)

    def supports(self, flag: str) -> bool:
        """Whether `sqs2pg run` has this flag yet (the CLI contract of issue 7 adds some)."""
        if not hasattr(self, "_run_help"):
            self._run_help = run([self.bin, "run", "--help"], env=self.env, check=False).stdout
        return flag in self._run_help

    def flag(self, flag: str, value, default):
        """([flag, value], value) when sqs2pg has the flag; otherwise ([], the contract's default)."""
        if self.supports(flag):
            return [flag, str(value)], value
        log(f"sqs2pg has no {flag} yet: relying on the contract's default {default}")
        return [], default

    # -- Postgres ---------------------------------------------------------------------------

    @property
    def pgdata(self):
        # scripts/stack keeps the cluster outside the stack dir (reachable by the postgres user
        # from any checkout) and records where it put it.
        record = self.dir / "cluster"
        return Path(record.read_text().strip()) / "data" if record.exists() else self.dir / "pg"

    def psql(self, sql: str, timeout=60, port=None, dbname="sqs2pg") -> str:
        env = dict(self.env)
        if port:
            env["PGPORT"] = str(port)
        env["PGDATABASE"] = dbname
        p = run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, timeout=timeout,
                what="psql")
        return p.stdout.strip()

    def try_psql(self, sql: str, **kw):
        try:
            return self.psql(sql, timeout=10, **kw)
        except Failed:
            return None

    def pg_ctl(self, *args, timeout=120):
        return run([pg_bin() / "pg_ctl", "-D", self.pgdata, *args], timeout=timeout, user="postgres",
                   what=f"pg_ctl {' '.join(map(str, args))}")

    def pg_stop(self, mode="immediate"):
        self.pg_ctl("-m", mode, "-w", "stop")
        self.pg_up = False

    def pg_start(self):
        self.pg_ctl("-l", self.pgdata / "server.log", "-w", "-t", "60", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -c unix_socket_directories={self.pgdata}",
                    "start")
        self.pg_up = True

    def ensure_pg(self):
        if not self.pg_up or self.try_psql("SELECT 1") != "1":
            try:
                self.pg_start()
            except Failed:
                pass

    # -- SQS --------------------------------------------------------------------------------

    def new_queue(self, name: str, visibility: int = 10) -> str:
        return self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]

    def depth(self, url: str):
        a = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def send(self, url: str, path: Path, n: int):
        t0 = time.monotonic()
        run([self.bin, "send", "--queue-url", url, "--endpoint-url", self.fauxqs, path], env=self.env,
            timeout=300 + n * 0.01, what=f"sqs2pg send ({n})")
        got = wait_until(lambda: self.depth(url) == (n, 0) or None, 30)
        if not got:
            raise Failed(f"queue holds {self.depth(url)} (visible, in flight) after sending {n}")
        log(f"sent {n} messages in {time.monotonic() - t0:.1f} s")


class Scenario:
    """Context of one scenario run: a queue, a table, messages, the runs of sqs2pg."""

    def __init__(self, stack: Stack, name: str, args, seq: int):
        self.stack = stack
        self.name = name
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(args.seed * 1000 + seq)
        tag = f"{name.replace('-', '_')}_{seq}_{uuid.uuid4().hex[:6]}"
        self.tag = tag
        self.table = f"f_{tag}"
        self.queue_name = f"q-{tag}".replace("_", "-")
        self.dir = stack.base / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self.notes = []
        self.expect = None
        self.url = None
        self.runs = 0
        self.faults = ""
        # --mapping orders: the scenario's messages are orders, loaded with examples/orders.toml.
        self.mapping = args.mapping
        self.unique_column = "customer_id" if self.mapping else "user_id"

    # -- set-up -----------------------------------------------------------------------------

    def fill(self, n: int, visibility: int = 10, invalid_every: int = 50, poison=()):
        self.url = self.stack.new_queue(self.queue_name, visibility)
        path = self.dir / "messages.ndjson"
        if self.mapping:
            if poison:
                raise Failed(f"scenario {self.name} poisons login rows: it runs without --mapping only")
            self.expect = write_orders(path, n, self.tag, self.seed, invalid_every)
        else:
            self.expect = write_messages(path, n, self.tag, self.seed, invalid_every, poison)
        self.stack.send(self.url, path, n)
        return self.url

    def create_table(self):
        """The table sqs2pg would create, made first so a scenario can add constraints to it."""
        if self.mapping:
            raise Failed(f"scenario {self.name} constrains the login table: it runs without --mapping only")
        self.stack.psql(
            f"CREATE TABLE {self.table} (user_id varchar(128), device_type varchar(32), masked_ip varchar(256),"
            " masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date)")

    # -- sqs2pg -----------------------------------------------------------------------------

    def cmd(self, *extra, endpoint=None, db=None, follow=False):
        c = [self.stack.bin, "run", "--queue-url", self.url, "--endpoint-url", endpoint or self.stack.fauxqs,
             "--table", self.table, "--key-file", self.stack.key, "--wait-seconds", "1"]
        if self.mapping:
            c += ["--mapping", ROOT / "examples" / f"{self.mapping}.toml"]
        if db:
            c += ["--db", db]
        if follow:
            c.append("--follow")
        c += [str(x) for x in extra]
        return c

    def start(self, cmd, label=None) -> Proc:
        self.runs += 1
        label = label or f"run{self.runs}"
        p = Proc(cmd, self.stack.env, self.dir / f"{label}.out", self.dir / f"{label}.err", label)
        self.procs.append(p)
        self.last_cmd = shlex.join(p.cmd)
        log(f"{self.name}: {label}: {self.last_cmd}")
        return p

    def finish(self, p: Proc, timeout: float, expect_rc=(0,)):
        """Waits for p to end by itself; a hang or a wrong exit status is a failure."""
        rc = p.wait(timeout)
        if rc is None:
            p.kill()
            raise Failed(f"{p.name} did not end by itself within {timeout:.0f} s (killed); "
                         f"stderr: {p.err_tail()}")
        if rc not in expect_rc:
            raise Failed(f"{p.name} exited {rc} after {p.seconds():.1f} s (expected {'/'.join(map(str, expect_rc))});"
                         f" summary: {p.summary()}; stderr: {p.err_tail()}")
        return rc

    # -- checks -----------------------------------------------------------------------------

    def counts(self):
        s = self.stack.psql(
            f"SELECT (SELECT count(*) FROM {self.table}), (SELECT count(DISTINCT {self.unique_column}) "
            f"FROM {self.table}),"
            f" (SELECT count(*) FROM {self.table}_rejects), (SELECT count(*) FROM {self.table}_ledger)")
        rows, distinct, rejects, ledger = (int(x) for x in s.split("|"))
        return {"rows": rows, "distinct": distinct, "rejects": rejects, "ledger": ledger}

    def ledger_count(self, port=None):
        v = self.stack.try_psql(f"SELECT count(*) FROM {self.table}_ledger", port=port)
        return int(v) if v and v.isdigit() else None

    def check_exactly_once(self, extra_rejects=0, queue_must_be_empty=True):
        e = self.expect
        c = self.counts()
        visible, hidden = self.stack.depth(self.url)
        problems = []
        if c["rows"] != c["distinct"]:
            problems.append(f"{c['rows'] - c['distinct']} rows loaded twice")
        if c["rows"] != e["valid"] - extra_rejects:
            problems.append(f"{c['rows']} rows, expected {e['valid'] - extra_rejects}")
        if c["rejects"] != e["invalid"] + extra_rejects:
            problems.append(f"{c['rejects']} rejects, expected {e['invalid'] + extra_rejects}")
        if c["rows"] + c["rejects"] != e["n"]:
            problems.append(f"rows + rejects = {c['rows'] + c['rejects']}, sent {e['n']}")
        if c["ledger"] != e["n"]:
            problems.append(f"ledger holds {c['ledger']}, sent {e['n']}")
        if queue_must_be_empty and (visible or hidden):
            problems.append(f"queue not empty: {visible} visible + {hidden} in flight")
        self.last_counts = dict(c, visible=visible, hidden=hidden)
        if problems:
            raise Failed("not exactly once: " + "; ".join(problems) + f" (counts {self.last_counts})")
        return c

    def drain_rest(self, timeout=120):
        """After runs that were killed: wait for in-flight messages to come back, drain again."""
        for i in range(6):
            visible, hidden = self.stack.depth(self.url)
            if not visible and not hidden:
                return
            if not visible:
                wait_until(lambda: self.stack.depth(self.url)[0] > 0 or self.stack.depth(self.url) == (0, 0), 60, 0.5)
            p = self.start(self.cmd(), label=f"final{i + 1}")
            self.finish(p, timeout)


# ---------------------------------------------------------------------------------------------
# Proxies


class SqsProxy:
    def __init__(self, sc: Scenario, rates: dict, stall_seconds=30.0, extra=()):
        self.sc = sc
        d = sc.dir
        self.port_file, self.ctl_file, self.stats_file = d / "proxy.port", d / "proxy.ctl", d / "proxy.stats.json"
        upstream = sc.stack.fauxqs.split("//", 1)[1]
        cmd = [sys.executable, HERE / "sqs_fault_proxy.py", "--upstream", upstream, "--port-file", self.port_file,
               "--control-port-file", self.ctl_file, "--stats-file", self.stats_file, "--seed", sc.seed,
               "--stall-seconds", stall_seconds, *extra]
        for k, v in rates.items():
            cmd += ["--rate", f"{k}={v}"]
        self.proc = Proc(cmd, sc.stack.env, d / "proxy.out", d / "proxy.err", "sqs_fault_proxy")
        self.url = f"http://127.0.0.1:{wait_file(self.port_file, 10, 'sqs_fault_proxy')}"
        self.rates = rates

    def control(self, line: str) -> str:
        port = int(self.ctl_file.read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall((line + "\n").encode())
            return s.makefile().readline().strip()

    def stats(self):
        try:
            return json.loads(self.control("stats"))
        except (OSError, ValueError):
            return json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}

    def describe(self) -> str:
        s = self.stats()
        inj = s.get("injected", {})
        total = sum(inj.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(inj.items()))
        idle = ""
        if s.get("last_request_unix") and time.time() - s["last_request_unix"] > 15:
            idle = f"; no SQS call in the last {time.time() - s['last_request_unix']:.0f} s"
        return f"{total} of {s.get('requests', 0)} SQS calls faulted ({parts}){idle}"

    def stop(self):
        self.proc.signal(signal.SIGTERM)
        if self.proc.wait(5) is None:
            self.proc.kill()


class TcpProxy:
    def __init__(self, sc: Scenario, upstream_port: int, label="tcp_proxy"):
        d = sc.dir
        self.port_file, self.ctl_file = d / f"{label}.port", d / f"{label}.ctl"
        self.proc = Proc([sys.executable, HERE / "tcp_proxy.py", "--upstream", f"127.0.0.1:{upstream_port}",
                          "--port-file", self.port_file, "--control-port-file", self.ctl_file],
                         sc.stack.env, d / f"{label}.out", d / f"{label}.err", label)
        self.port = int(wait_file(self.port_file, 10, label))
        wait_file(self.ctl_file, 10, label)

    def control(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", int(self.ctl_file.read_text())), timeout=5) as s:
            s.sendall((line + "\n").encode())
            return s.makefile().readline().strip()

    def stop(self):
        self.proc.signal(signal.SIGTERM)
        if self.proc.wait(5) is None:
            self.proc.kill()


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns (faults injected, outcome) strings, or raises Failed.

SCENARIOS = {}


def scenario(name, quick, doc):
    def deco(fn):
        SCENARIOS[name] = {"fn": fn, "quick": quick, "doc": doc}
        return fn
    return deco


MIX30 = {"error": 0.07, "throttle": 0.07, "drop": 0.06, "lost": 0.06, "stall": 0.02, "partial": 0.3}


def sqs_drain(sc: Scenario, rates, n, extra=(), timeout=None, stall_seconds=20.0, label="drain"):
    sc.fill(n, visibility=8)
    proxy = SqsProxy(sc, rates, stall_seconds=stall_seconds)
    try:
        p = sc.start(sc.cmd(*extra, endpoint=proxy.url), label)
        sc.finish(p, timeout or 120 + n * 0.05)
    finally:
        faults = sc.faults = proxy.describe()
        proxy.stop()
    c = sc.check_exactly_once()
    return faults, f"exit 0 in {p.seconds():.1f} s; {c['rows']} rows + {c['rejects']} rejects; summary {p.summary()}"


@scenario("sqs-mix", True, "drain through the SQS fault proxy failing ~30% of calls (500/503, throttling, "
          "dropped connections, lost responses, 20 s stalls; 30% of batch calls partly failed)")
def sc_sqs_mix(sc: Scenario):
    return sqs_drain(sc, MIX30, 1000 if sc.args.quick else 5000)


@scenario("sqs-throttle", True, "drain while 40% of SQS calls are throttled (both AWS throttling answers)")
def sc_sqs_throttle(sc: Scenario):
    return sqs_drain(sc, {"throttle": 0.4}, 1000 if sc.args.quick else 5000)


@scenario("sqs-partial", True, "drain while 60% of batch calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) "
          "succeed for only some entries, and 5% of calls lose their response")
def sc_sqs_partial(sc: Scenario):
    return sqs_drain(sc, {"partial": 0.6, "lost": 0.05}, 1000 if sc.args.quick else 5000,
                     extra=("--visibility-timeout", "4"))


@scenario("sqs-stall", False, "drain while 5% of SQS calls stall for 120 s (held open, never answered): "
          "the client must give up on them by itself, the drain must end well before the stalls do")
def sc_sqs_stall(sc: Scenario):
    n = 1000
    faults, outcome = sqs_drain(sc, {"stall": 0.05}, n, stall_seconds=120, timeout=100)
    return faults, outcome


@scenario("sqs-follow", True, "--follow through the SQS fault proxy (~30% faults): everything loaded, then "
          "SIGTERM ends it with exit 0 within the shutdown timeout")
def sc_sqs_follow(sc: Scenario):
    n = 1000 if sc.args.quick else 5000
    sc.fill(n, visibility=8)
    proxy = SqsProxy(sc, MIX30, stall_seconds=20)
    try:
        flag, shutdown = sc.stack.flag("--shutdown-timeout", 10, 20)
        p = sc.start(sc.cmd(*flag, endpoint=proxy.url, follow=True), "follow")
        done = wait_until(lambda: (not p.running()) or (sc.ledger_count() == n and sc.stack.depth(sc.url) == (0, 0)),
                          120 + n * 0.05, 1.0)
        if not p.running():
            raise Failed(f"--follow ended by itself with exit {p.rc} after {p.seconds():.1f} s: {p.err_tail()}")
        if not done:
            c = sc.counts()
            p.kill()
            raise Failed(f"--follow did not load everything in time: {c}, queue {sc.stack.depth(sc.url)}")
        t_loaded = p.seconds()
        t_term = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = p.wait(shutdown + 5)
        if rc is None:
            p.kill()
            raise Failed(f"--follow ignored SIGTERM for {shutdown + 5} s (shutdown timeout {shutdown} + 5): "
                         f"{p.err_tail()}")
        if rc != 0:
            raise Failed(f"--follow exited {rc} on SIGTERM: {p.err_tail()}")
    finally:
        faults = sc.faults = proxy.describe()
        proxy.stop()
    c = sc.check_exactly_once()
    return faults, (f"all loaded after {t_loaded:.1f} s; SIGTERM -> exit 0 in {time.monotonic() - t_term:.1f} s; "
                    f"{c['rows']} rows + {c['rejects']} rejects")


def wait_for_progress(sc: Scenario, p: Proc, min_rows=1, timeout=60):
    got = wait_until(lambda: (not p.running()) or ((sc.ledger_count() or 0) >= min_rows), timeout, 0.1)
    if not got or not p.running():
        raise Failed(f"{p.name} made no progress before the fault (running={p.running()}, rc={p.rc}, "
                     f"ledger={sc.ledger_count()}): {p.err_tail()}")
    return sc.ledger_count()


@scenario("pg-restart", True, "Postgres stopped (pg_ctl -m immediate) for 10-20 s mid-drain, then started: "
          "the drain rides it out and exits 0")
def sc_pg_restart(sc: Scenario):
    n = 20000 if sc.args.quick else 60000
    sc.fill(n, visibility=30)
    outage = 10 if sc.args.quick else sc.rng.uniform(10, 20)
    sc.faults = f"Postgres stopped (immediate) for {outage:.1f} s mid-drain"
    p = sc.start(sc.cmd("--batch-size", "200"), "drain")
    at = wait_for_progress(sc, p, 200)
    sc.stack.pg_stop("immediate")
    stopped_running = p.running()
    time.sleep(outage)
    sc.stack.pg_start()
    sc.finish(p, 400)
    c = sc.check_exactly_once()
    return (f"Postgres down {outage:.1f} s (immediate stop at {at}/{n} in the ledger; sqs2pg still running: "
            f"{stopped_running})",
            f"exit 0 in {p.seconds():.1f} s; exactly once; summary {p.summary()}")


@scenario("pg-terminate", True, "every sqs2pg backend killed with pg_terminate_backend, 10 times in 5 s, mid-drain")
def sc_pg_terminate(sc: Scenario):
    n = 20000 if sc.args.quick else 60000
    sc.fill(n, visibility=30)
    p = sc.start(sc.cmd("--batch-size", "200"), "drain")
    wait_for_progress(sc, p, 200)
    killed = 0
    sc.faults = "pg_terminate_backend of sqs2pg's backends, 10 times in 5 s"
    for _ in range(10):
        v = sc.stack.try_psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = 'sqs2pg' AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        killed += int(v or 0)
        time.sleep(0.5)
    sc.finish(p, 300)
    c = sc.check_exactly_once()
    return (f"{killed} backends terminated", f"exit 0 in {p.seconds():.1f} s; exactly once; summary {p.summary()}")


def down_then_sigterm(sc: Scenario, follow: bool, margin=3.0):
    flag, shutdown = sc.stack.flag("--shutdown-timeout", 5, 20)
    base = sc.ledger_count() or 0
    p = sc.start(sc.cmd("--batch-size", "200", *flag, follow=follow),
                 "follow" if follow else "drain")
    wait_for_progress(sc, p, base + 200)
    sc.stack.pg_stop("immediate")
    time.sleep(3)
    if not p.running():
        rc = p.rc
        sc.stack.pg_start()
        raise Failed(f"{p.name} exited {rc} by itself 3 s after Postgres went down (should ride it out): "
                     f"{p.err_tail()}")
    t = time.monotonic()
    p.signal(signal.SIGTERM)
    rc = p.wait(shutdown + margin)
    took = time.monotonic() - t
    if rc is None:
        # a second signal must end it at once
        p.signal(signal.SIGTERM)
        rc2 = p.wait(3)
        p.kill()
        sc.stack.pg_start()
        raise Failed(f"{p.name}: SIGTERM with Postgres down not obeyed within --shutdown-timeout {shutdown} + "
                     f"{margin} s; a second SIGTERM {'ended it' if rc2 is not None else 'did not end it either'}")
    sc.stack.pg_start()
    return rc, took, shutdown


@scenario("pg-down-sigterm", True, "Postgres stopped mid-run, then SIGTERM: a drain and a --follow each exit "
          "within --shutdown-timeout 5 (+3 s margin); afterwards a drain loads the rest exactly once")
def sc_pg_down_sigterm(sc: Scenario):
    sc.fill(20000, visibility=10)
    sc.faults = "Postgres stopped mid-run, then SIGTERM (--shutdown-timeout 5), for --follow and for a drain"
    parts, problems = [], []
    for follow in (True, False):
        mode = "follow" if follow else "drain"
        try:
            rc, took, shutdown = down_then_sigterm(sc, follow=follow)
            parts.append(f"{mode}: exit {rc} {took:.1f} s after SIGTERM (shutdown timeout {shutdown} s)")
        except Failed as e:
            problems.append(f"{mode}: {e}")
        wait_until(lambda: sc.stack.try_psql("SELECT 1") == "1", 30, 0.5)
    time.sleep(1)
    try:
        sc.drain_rest()
        sc.check_exactly_once()
        parts.append("then a drain: exactly once")
    except Failed as e:
        problems.append(f"the drain afterwards: {e}")
    if problems:
        raise Failed("; ".join(problems + parts))
    return sc.faults, "; ".join(parts)


@scenario("pg-blackhole", True, "sqs2pg reaches Postgres through tests/faults/tcp_proxy.py, which stops forwarding "
          "(sockets kept open) for 40 s mid-drain, then resumes: the run ends by itself with exit 0, exactly once")
def sc_pg_blackhole(sc: Scenario):
    n = 20000
    sc.fill(n, visibility=30)
    tp = TcpProxy(sc, sc.stack.pg_port)
    try:
        db = f"host=127.0.0.1 port={tp.port} dbname=sqs2pg user=postgres"
        p = sc.start(sc.cmd("--batch-size", "200", db=db), "drain")
        wait_for_progress(sc, p, 200)
        tp.control("blackhole")
        sc.faults = "Postgres path blackholed 40 s mid-drain (TCP proxy)"
        time.sleep(40)
        running_at_resume = p.running()
        tp.control("resume")
        sc.finish(p, 300)
    finally:
        tp.stop()
    c = sc.check_exactly_once()
    return ("Postgres path blackholed 40 s (TCP proxy holds the bytes, sockets open)",
            f"exit 0 in {p.seconds():.1f} s (still running at resume: {running_at_resume}); exactly once")


@scenario("pg-blackhole-sigterm", True, "sqs2pg --follow with 4 Postgres connections through tests/faults/tcp_proxy.py; "
          "the proxy stops forwarding (new connections accepted and held, as from a host that went silent), "
          "then SIGTERM: the process ends within --shutdown-timeout 5 + 2 s; afterwards a drain loads the rest "
          "exactly once (issue 17, item 7)")
def sc_pg_blackhole_sigterm(sc: Scenario):
    n = 20000
    shutdown, margin = 5, 2.0
    sc.fill(n, visibility=30)
    tp = TcpProxy(sc, sc.stack.pg_port)
    try:
        db = f"host=127.0.0.1 port={tp.port} dbname=sqs2pg user=postgres"
        p = sc.start(sc.cmd("--batch-size", "200", "--db-connections", "4", "--shutdown-timeout", shutdown, db=db,
                            follow=True), "follow")
        wait_for_progress(sc, p, 400)
        tp.control("blackhole")
        sc.faults = "Postgres path blackholed (4 connections, new ones held too), then SIGTERM"
        time.sleep(3)  # the loaders are now stuck in calls the server will never answer
        t = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = p.wait(shutdown + margin + 20)
        took = time.monotonic() - t
        if rc is None:
            p.kill()
            raise Failed(f"SIGTERM with the Postgres path blackholed: still running {shutdown + margin + 20:.0f} s "
                         f"later (killed); stderr: {p.err_tail()}")
        if took > shutdown + margin:
            raise Failed(f"SIGTERM with the Postgres path blackholed: exit {rc} after {took:.1f} s, more than "
                         f"--shutdown-timeout {shutdown} + {margin:.0f} s")
    finally:
        tp.stop()  # closes the held connections: their backends roll back
    sc.drain_rest()
    c = sc.check_exactly_once()
    return sc.faults, (f"exit {rc} {took:.1f} s after SIGTERM (bound {shutdown + margin:.0f} s); then a drain: "
                       f"{c['rows']} rows + {c['rejects']} rejects, exactly once")


@scenario("pg-freeze", False, "the connections sqs2pg has open to Postgres stop answering for good (tcp_proxy "
          "freeze; new connections still work): the drain must notice by itself and end with exit 0")
def sc_pg_freeze(sc: Scenario):
    n = 20000
    sc.fill(n, visibility=30)
    tp = TcpProxy(sc, sc.stack.pg_port)
    try:
        db = f"host=127.0.0.1 port={tp.port} dbname=sqs2pg user=postgres"
        p = sc.start(sc.cmd("--batch-size", "200", db=db), "drain")
        wait_for_progress(sc, p, 200)
        tp.control("freeze")
        # The frozen backends may hold ledger row locks; the server cannot see that its client is
        # gone (the proxy's kernel is alive), so end them after 60 s as a server-side timeout would.
        rc = p.wait(60)
        sc.stack.try_psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'sqs2pg' "
                          "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                          "AND state_change < now() - interval '30 seconds'")
        sc.finish(p, 240)
    finally:
        tp.stop()
    c = sc.check_exactly_once()
    return ("open Postgres connections frozen for good at mid-drain", f"exit 0 in {p.seconds():.1f} s; exactly once")


@scenario("kill9", True, "SIGKILL at random moments during a 60,000-message drain (10 kills, each after the "
          "run committed 1,000-4,000 more rows plus 0-300 ms; restart after each; quick: 20,000 and 4 kills): "
          "exactly once at the end")
def sc_kill9(sc: Scenario):
    n, kills = (20000, 4) if sc.args.quick else (60000, 10)
    sc.fill(n, visibility=6)
    ended_early = []
    sc.faults = f"{kills} SIGKILLs mid-drain"
    killed = 0
    for i in range(kills):
        # start only while messages are visible, so the run has work (the killed run's come back
        # after the 6 s visibility timeout)
        wait_until(lambda: sc.stack.depth(sc.url)[0] > 0 or sc.stack.depth(sc.url) == (0, 0), 30, 0.2)
        base = sc.ledger_count() or 0
        p = sc.start(sc.cmd(), f"killed{i + 1}")
        more = sc.rng.randint(1000, 4000)
        wait_until(lambda: not p.running() or (sc.ledger_count() or 0) >= base + more, 60, 0.05)
        time.sleep(sc.rng.uniform(0, 0.3))
        if not p.running():
            ended_early.append(f"{p.name} exit {p.rc}, queue {sc.stack.depth(sc.url)}")
            if p.rc != 0:
                raise Failed(f"{p.name} exited {p.rc} before its kill: {p.err_tail()}")
            continue
        p.kill()
        killed += 1
    sc.drain_rest(timeout=300)
    c = sc.check_exactly_once()
    dups = sum((q.summary() or {}).get("duplicates", 0) for q in sc.procs)
    sc.notes += [f"ended before its kill: {x}" for x in ended_early]
    return (f"{killed} SIGKILLs mid-drain ({len(ended_early)} runs ended by themselves before their kill)",
            f"{sc.runs} runs; exactly once; {dups} duplicates skipped by the ledger in the runs that finished")


@scenario("scale-out", True, "four sqs2pg processes drain one queue together (quick: 20,000 messages; full: 60,000)")
def sc_scale_out(sc: Scenario):
    n = 20000 if sc.args.quick else 60000
    sc.fill(n, visibility=30)
    ps = [sc.start(sc.cmd(), f"worker{i + 1}") for i in range(4)]
    for p in ps:
        sc.finish(p, 300)
    c = sc.check_exactly_once()
    got = [(p.summary() or {}).get("received", 0) for p in ps]
    return ("4 concurrent consumers", f"all exit 0; received per process {got}; exactly once")


@scenario("poison-check", True, "a CHECK constraint the user added refuses one row (SQLSTATE 23514): it becomes a "
          "reject, its batch-mates load")
def sc_poison_check(sc: Scenario):
    n = 2000
    sc.create_table()
    sc.stack.psql(f"ALTER TABLE {sc.table} ADD CONSTRAINT no_poison CHECK (user_id <> 'poison')")
    sc.fill(n, visibility=3, poison={777: "poison"})
    p = sc.start(sc.cmd(), "drain")
    sc.finish(p, 180)
    c = sc.check_exactly_once(extra_rejects=1)
    reason = sc.stack.psql(f"SELECT reason FROM {sc.table}_rejects r WHERE NOT EXISTS (SELECT 1 FROM {sc.table} "
                           f"t WHERE false) AND reason ILIKE '%refused%' LIMIT 1")
    return ("CHECK (user_id <> 'poison') refuses 1 of 2,000", f"exit 0; reject reason: {reason[:120]!r}")


@scenario("poison-trigger", True, "a trigger RAISEs SQLSTATE P0001 for one user_id (not a data error): after "
          "--max-receives 3 deliveries it becomes a reject, its batch-mates load, the run exits 0")
def sc_poison_trigger(sc: Scenario):
    n = 2000
    sc.create_table()
    sc.stack.psql(
        f"CREATE FUNCTION {sc.table}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.user_id = 'poison-trigger' THEN RAISE EXCEPTION 'refused by trigger' USING ERRCODE = 'P0001'; "
        f"END IF; RETURN NEW; END $$; "
        f"CREATE TRIGGER refuse BEFORE INSERT ON {sc.table} FOR EACH ROW EXECUTE FUNCTION {sc.table}_refuse()")
    sc.fill(n, visibility=3, poison={1234: "poison-trigger"})
    flag, receives = sc.stack.flag("--max-receives", 3, 10)
    p = sc.start(sc.cmd(*flag, "--visibility-timeout", "3"), "drain")
    sc.finish(p, 120 + receives * 10)
    c = sc.check_exactly_once(extra_rejects=1)
    return ("trigger raises P0001 for 1 of 2,000", f"exit 0 in {p.seconds():.1f} s; exactly once; summary {p.summary()}")


# -- pg_auto_failover --------------------------------------------------------------------------


class AutoFailover:
    """monitor + two Postgres nodes (primary, synchronous standby) on 127.0.0.1, run as postgres."""

    def __init__(self, base: Path):
        self.base = base
        self.procs = []
        self.env = dict(os.environ, PATH=f"{pg_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        self.env.pop("PGDATA", None)
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
            self.env.pop(k, None)

    def autoctl(self, *args, timeout=120, check=True):
        return run(["env", f"PATH={self.env['PATH']}", f"XDG_CONFIG_HOME={self.base}/config",
                    f"XDG_DATA_HOME={self.base}/data", "pg_autoctl", *args], env=self.env, timeout=timeout,
                   check=check, user="postgres", what=f"pg_autoctl {args[0]} {args[1] if len(args) > 1 else ''}")

    def spawn(self, name, *args):
        cmd = ["runuser", "-u", "postgres", "--", "env", f"PATH={self.env['PATH']}",
               f"XDG_CONFIG_HOME={self.base}/config", f"XDG_DATA_HOME={self.base}/data", "pg_autoctl", *args]
        p = Proc(cmd, self.env, self.base / f"{name}.out", self.base / f"{name}.err", name)
        self.procs.append(p)
        return p

    def up(self):
        if not shutil.which("pg_autoctl"):
            raise Failed("pg_autoctl not installed: scripts/install-deps --faults (postgresql-15-auto-failover)")
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        shutil.chown(self.base, "postgres", "postgres")
        self.mport, self.p1, self.p2 = free_port(), free_port(), free_port()
        mon = self.base / "monitor"
        # create, bind it to the loopback only (the monitor has no --listen), then run it
        self.autoctl("create", "monitor", "--pgdata", mon, "--pgport", self.mport, "--hostname", "127.0.0.1",
                     "--auth", "trust", "--no-ssl", timeout=180)
        self.autoctl("config", "set", "--pgdata", mon, "postgresql.listen_addresses", "127.0.0.1", check=False)
        pg_conf = mon / "postgresql-auto-failover.conf"
        if pg_conf.exists():
            text = pg_conf.read_text().replace("listen_addresses = '*'", "listen_addresses = '127.0.0.1'")
            pg_conf.write_text(text)
        run([pg_bin() / "pg_ctl", "-D", mon, "-m", "fast", "-w", "stop"], user="postgres", check=False, timeout=60)
        self.spawn("monitor", "run", "--pgdata", mon)
        uri = wait_until(lambda: self._monitor_uri(), 90, 1.0)
        if not uri:
            raise Failed(f"pg_autoctl monitor did not come up: {self.procs[0].err_tail()}")
        self.monitor = uri
        for i, port in ((1, self.p1), (2, self.p2)):
            self.spawn(f"node{i}", "create", "postgres", "--pgdata", self.base / f"node{i}", "--pgport", port,
                       "--listen", "127.0.0.1", "--hostname", "127.0.0.1", "--name", f"node{i}", "--auth", "trust",
                       "--no-ssl", "--dbname", "sqs2pg", "--monitor", uri, "--run")
            if i == 1:
                if not wait_until(lambda: {"primary", "single"} & set(self.states().values()), 120, 1.0):
                    raise Failed(f"node1 did not become primary: {self.procs[-1].err_tail()} {self.states()}")
        # pg_basebackup (standby set-up, and a rejoin after a failover) waits for a spread
        # checkpoint, up to minutes on an idle primary: ask for one now and then.
        if not wait_until(lambda: self.stable() or self.checkpoint(), 300, 2.0):
            raise Failed(f"no primary + secondary after 300 s: {self.states()}: {self.procs[-1].err_tail()}")

    def waiting_backends(self):
        """Client backends of either node, from ps: their titles show a COMMIT waiting for sync rep."""
        p = run(["ps", "-eo", "pid,args"], check=False, timeout=10)
        return [x.strip()[:120] for x in p.stdout.splitlines() if "postgres: postgres sqs2pg" in x][:6]

    def checkpoint(self):
        for port in (self.p1, self.p2):
            run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "sqs2pg", "-c",
                 "CHECKPOINT"], env=self.env, timeout=30, check=False)
        return False

    def _monitor_uri(self):
        p = self.autoctl("show", "uri", "--pgdata", self.base / "monitor", "--formation", "monitor", check=False,
                         timeout=20)
        out = p.stdout.strip()
        return out if p.returncode == 0 and out.startswith("postgres") else None

    def states(self) -> dict:
        p = self.autoctl("show", "state", "--pgdata", self.base / "monitor", "--json", check=False, timeout=20)
        try:
            nodes = json.loads(p.stdout)
            if isinstance(nodes, dict):  # some versions wrap the list
                nodes = next((v for v in nodes.values() if isinstance(v, list)), [])
            out = {}
            for n in nodes:
                k = {key.lower().replace(" ", "_"): v for key, v in n.items()}
                name = next((v for key, v in k.items() if "name" in key), None) or str(k.get("node_id"))
                reported = next((v for key, v in k.items() if "state" in key and
                                 ("current" in key or "reported" in key)), None)
                goal = next((v for key, v in k.items() if "state" in key and "assigned" in key), reported)
                out[name] = reported if reported == goal else f"{reported}->{goal}"
            return out
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}

    def stable(self) -> bool:
        s = self.states()
        return sorted(s.values()) == ["primary", "secondary"]

    def sync_standby_names(self):
        out = {}
        for port in (self.p1, self.p2):
            p = run(["psql", "-X", "-t", "-A", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "sqs2pg", "-c",
                     "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names')"],
                    env=self.env, timeout=10, check=False)
            out[port] = p.stdout.strip()
        return out

    def conninfo(self):
        return (f"host=127.0.0.1,127.0.0.1 port={self.p1},{self.p2} dbname=sqs2pg user=postgres "
                f"target_session_attrs=read-write connect_timeout=5")

    def down(self):
        for p in self.procs[::-1]:
            p.signal(signal.SIGTERM)
        for p in self.procs[::-1]:
            if p.wait(30) is None:
                p.kill()
        # a node's postgres may outlive pg_autoctl
        for d in ("node1", "node2", "monitor"):
            if (self.base / d / "postmaster.pid").exists():
                run([pg_bin() / "pg_ctl", "-D", self.base / d, "-m", "immediate", "-w", "stop"], user="postgres",
                    check=False, timeout=60)


@scenario("failover", False, "pg_auto_failover (monitor + primary + synchronous standby on loopback); repeated "
          "drains with `pg_autoctl perform failover` mid-drain: every drain ends by itself, the failover command "
          "completes, exactly once")
def sc_failover(sc: Scenario):
    af = AutoFailover(Path(tempfile.mkdtemp(prefix="sqs2pg-faults-paf-", dir="/var/tmp")))
    rounds = sc.args.runs if sc.args.runs > 1 else 5
    sc.faults = f"pg_autoctl perform failover mid-drain, {rounds} rounds"
    outcomes = []
    failures = []
    try:
        af.up()
        log(f"failover: cluster up, monitor {af.monitor}, nodes {af.p1}, {af.p2}: {af.sync_standby_names()}")
        db = af.conninfo()
        # the scenario's checks read through the current primary
        for r in range(rounds):
            sub = Scenario(sc.stack, f"failover-{r + 1}", sc.args, 100 + r)
            sub.dir = sc.dir / f"round{r + 1}"
            sub.dir.mkdir(parents=True, exist_ok=True)
            n = 40000  # long enough that the failover (10-20 s) falls inside the drain
            sub.fill(n, visibility=30)
            primary_port = lambda: next((pt for pt, v in af.sync_standby_names().items() if v.startswith("f|")), None)  # noqa: E731
            p = sub.start(sub.cmd("--batch-size", "200", db=db), "drain")
            pp = primary_port()
            wait_until(lambda: (not p.running()) or (sub.ledger_count(port=pp) or 0) >= 200, 60, 0.1)
            at_rows = sub.ledger_count(port=pp)
            t = time.monotonic()
            try:
                fo = af.autoctl("perform", "failover", "--pgdata", af.base / "monitor", "--wait", "90", timeout=120,
                                check=False)
                fo_ok, fo_err = fo.returncode == 0, f"exit {fo.returncode}: {(fo.stderr or fo.stdout).strip()[-300:]}"
            except Failed as e:  # the command itself hung: the failover is blocked
                fo_ok, fo_err = False, str(e)[:300]
            fo_s = time.monotonic() - t
            running_after_failover = p.running()
            rc = p.wait(300)
            if rc is None:
                p.kill()
            stable = wait_until(lambda: af.stable() or af.checkpoint(), 180, 2.0)
            pp = primary_port()
            # checks against the new primary
            orig_env = sub.stack.env
            sub.stack.env = dict(orig_env, PGPORT=str(pp))
            try:
                problems = []
                if not fo_ok:
                    problems.append(f"failover did not complete ({fo_s:.0f} s): {fo_err}; states {af.states()}; "
                                    f"backends waiting: {af.waiting_backends()}")
                if rc is None:
                    problems.append(f"drain hung (killed after 300 s): {p.err_tail()}")
                elif rc != 0:
                    problems.append(f"drain exit {rc}: {p.err_tail()}")
                if not stable:
                    problems.append(f"cluster not back to primary+secondary: {af.states()}")
                if rc != 0:  # finish the work (through the new primary) so the exactly-once check means something
                    try:
                        for i in range(3):
                            if sub.stack.depth(sub.url) == (0, 0):
                                break
                            wait_until(lambda: sub.stack.depth(sub.url)[0] > 0, 40, 0.5)
                            q = sub.start(sub.cmd(db=db), f"after{i + 1}")
                            sub.finish(q, 300)
                    except Failed as e:
                        problems.append(f"a drain after the failover failed too: {e}")
                try:
                    sub.check_exactly_once()
                except Failed as e:
                    problems.append(str(e))
            finally:
                sub.stack.env = orig_env
            line = (f"round {r + 1}: failover started at {at_rows}/{n} rows, {'ok' if fo_ok else 'FAILED'} in "
                    f"{fo_s:.1f} s (drain still running then: {running_after_failover}), drain "
                    f"{'hung' if rc is None else f'exit {rc}'} in {p.seconds():.1f} s"
                    + ("" if not problems else " -- " + "; ".join(problems)))
            log(line)
            outcomes.append(line)
            sc.runs += sub.runs
            if problems:
                failures.append(line)
            if not stable:
                outcomes.append(f"cluster did not recover after round {r + 1}: the remaining rounds are skipped")
                break
    finally:
        af.down()
        if not sc.args.keep:
            shutil.rmtree(af.base, ignore_errors=True)
    sc.notes.extend(outcomes)
    if failures:
        raise Failed(f"{len(failures)} of {len(failures) + sum(1 for o in outcomes if o.startswith('round') and ' -- ' not in o)} "
                     f"rounds run failed ({rounds} planned): " + " || ".join(failures))
    return (f"{rounds} failovers mid-drain", f"all {rounds} drains exit 0, failovers completed, exactly once")


# -- soak ----------------------------------------------------------------------------------------


@scenario("soak", False, "1,000,000 messages through one --follow process (sent in chunks of 50,000 as it runs), "
          "RSS sampled every second (CSV in docs/soak-rss.csv)")
def sc_soak(sc: Scenario):
    total = sc.args.soak_n
    chunk = 50000
    sc.url = sc.stack.new_queue(sc.queue_name, 30)
    sc.expect = {"n": 0, "valid": 0, "invalid": 0}
    p = sc.start(sc.cmd(follow=True), "follow")
    samples = []
    t0 = time.monotonic()
    sent = 0
    idx = 0

    def sample():
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    ledger = sc.ledger_count() or 0
                    samples.append((round(time.monotonic() - t0, 1), rss, ledger))
                    return
        except OSError:
            pass

    import threading
    stop = threading.Event()

    def sampler():
        while not stop.is_set() and p.running():
            sample()
            stop.wait(1.0)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        while sent < total:
            k = min(chunk, total - sent)
            path = sc.dir / f"chunk{idx}.ndjson"
            e = write_messages(path, k, f"{sc.tag}c{idx}", sc.seed + idx)
            for key in ("n", "valid", "invalid"):
                sc.expect[key] += e[key]
            run([sc.stack.bin, "send", "--queue-url", sc.url, "--endpoint-url", sc.stack.fauxqs, path],
                env=sc.stack.env, timeout=900, what="sqs2pg send")
            path.unlink()
            sent += k
            idx += 1
            log(f"soak: sent {sent}/{total}, ledger {sc.ledger_count()}, RSS {samples[-1][1] if samples else '?'} KiB")
            if not p.running():
                raise Failed(f"--follow ended by itself: exit {p.rc}: {p.err_tail()}")
            # keep the queue shallow: wait while more than 2 chunks are waiting
            wait_until(lambda: not p.running() or sum(sc.stack.depth(sc.url)) < 2 * chunk, 3600, 2.0)
        if not wait_until(lambda: not p.running() or (sc.ledger_count() == total and sc.stack.depth(sc.url) == (0, 0)),
                          3600, 2.0) or not p.running():
            raise Failed(f"not everything loaded: ledger {sc.ledger_count()}, running {p.running()}: {p.err_tail()}")
        time.sleep(3)
        p.signal(signal.SIGTERM)
        rc = p.wait(30)
        if rc != 0:
            p.kill()
            raise Failed(f"SIGTERM at the end: exit {rc}")
    finally:
        stop.set()
        th.join(5)
        out = Path(sc.args.soak_csv)
        with open(out, "w") as f:
            f.write("seconds,rss_kib,ledger_rows\n")
            for s in samples:
                f.write(f"{s[0]},{s[1]},{s[2]}\n")
        log(f"soak: {len(samples)} RSS samples written to {out}")
    c = sc.check_exactly_once()
    rss = [s[1] for s in samples]
    mid = rss[len(rss) // 10:] if len(rss) > 10 else rss
    return (f"{total:,} messages in {idx} chunks of {chunk:,} through --follow",
            f"exit 0 on SIGTERM after {p.seconds():.0f} s; exactly once; RSS min {min(rss) / 1024:.1f} / "
            f"max {max(rss) / 1024:.1f} / last {rss[-1] / 1024:.1f} MiB; after the first 10%: "
            f"{min(mid) / 1024:.1f}-{max(mid) / 1024:.1f} MiB; {len(samples)} samples")


def plot_soak(path: Path, width=60, height=12) -> str:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line.strip()]
    t = [float(r[0]) for r in rows]
    rss = [int(r[1]) / 1024 for r in rows]
    led = [int(r[2]) for r in rows]
    if not rows:
        return "no samples"
    lo, hi = 0.0, max(rss) * 1.1
    grid = [[" "] * width for _ in range(height)]
    for x, y in zip(t, rss):
        col = min(width - 1, int(x / max(t[-1], 1e-9) * (width - 1)))
        row = height - 1 - min(height - 1, round((y - lo) / (hi - lo) * (height - 1)))
        grid[row][col] = "*"
    lines = []
    for i, r in enumerate(grid):
        label = hi - (hi - lo) * i / (height - 1)
        lines.append(f"{label:6.1f} MiB |" + "".join(r))
    lines.append(" " * 11 + "+" + "-" * width)
    lines.append(" " * 12 + f"0 s{' ' * (width - 10)}{t[-1]:.0f} s")
    tenth = len(rss) // 10
    steady = rss[tenth:] or rss
    # a leak shows as a slope: compare the mean of the second and the last quarter of the samples
    q = max(1, len(rss) // 4)
    summary = (f"{len(rows)} samples over {t[-1]:.0f} s, {led[-1]:,} rows in the ledger at the last one; RSS min "
               f"{min(rss):.1f}, max {max(rss):.1f}, last {rss[-1]:.1f} MiB; after the first 10% of the run "
               f"{min(steady):.1f}-{max(steady):.1f} MiB; mean of the 2nd quarter {sum(rss[q:2 * q]) / q:.1f} MiB, "
               f"of the last quarter {sum(rss[-q:]) / q:.1f} MiB")
    return summary + "\n\n```\n" + "\n".join(lines) + "\n```"


# ---------------------------------------------------------------------------------------------
# Runner


def run_one(name, args, stack_base: Path, binary: Path, seq: int):
    spec = SCENARIOS[name]
    stack = Stack(stack_base, binary, args.mapping)
    t0 = time.monotonic()
    sc = None
    status, faults, outcome = "FAIL", "", ""
    try:
        stack.up()
        sc = Scenario(stack, name, args, seq)
        faults, outcome = spec["fn"](sc)
        status = "PASS"
    except Failed as e:
        outcome = str(e)
        faults = faults or (sc.faults if sc else "")
    except Exception as e:  # noqa: BLE001 - a harness bug is reported as a failure, with its trace
        outcome = f"harness error: {e!r}: {traceback.format_exc()[-1200:]}"
    finally:
        Proc.kill_all()
        try:
            if stack.env:
                stack.ensure_pg()
        except Exception as e:  # noqa: BLE001
            log(f"could not restart Postgres before stopping the stack: {e!r}")
        finally:
            stack.down()
    secs = time.monotonic() - t0
    runs = sc.runs if sc else 0
    line = (f"RESULT {name}: {status} | faults: {faults or '-'} | sqs2pg runs: {runs} | outcome: {outcome} | "
            f"{secs:.0f} s")
    print(line, flush=True)
    return {"name": name, "status": status, "faults": faults, "outcome": outcome, "seconds": round(secs, 1),
            "runs": runs, "notes": sc.notes if sc else [], "cmd": sc and getattr(sc, "last_cmd", None),
            "dir": str(sc.dir) if sc else None}


def main() -> int:
    p = argparse.ArgumentParser(prog="tests/faults/faults.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="name, quick or not, and what each scenario does")
    pl = sub.add_parser("plot", help="summary and text plot of a soak CSV (seconds,rss_kib,ledger_rows)")
    pl.add_argument("csv")
    r = sub.add_parser("run", help="run scenarios by name (`all`: every one but soak; `quick`: the quick ones)")
    r.add_argument("names", nargs="+")
    r.add_argument("--quick", action="store_true", help="smaller sizes (what ctest runs)")
    r.add_argument("--runs", type=int, default=1, help="repeat each scenario this many times (failover: rounds)")
    r.add_argument("--seed", type=int, default=7, help="seed for messages and fault draws (default 7)")
    r.add_argument("--bin", default=str(ROOT / "build/sqs2pg"))
    r.add_argument("--dir", help="scratch directory (default: a new one under /var/tmp)")
    r.add_argument("--keep", action="store_true", help="keep the scratch directory")
    r.add_argument("--report", help="append the results, as Markdown, to this file")
    r.add_argument("--json", help="write the results as JSON to this file")
    r.add_argument("--mapping", choices=["orders"],
                   help="messages are orders, loaded with examples/<MAPPING>.toml (a non-login mapping), in "
                        "the scenarios that do not poison login rows")
    r.add_argument("--soak-n", type=int, default=1_000_000)
    r.add_argument("--soak-csv", default=str(ROOT / "docs/soak-rss.csv"))
    args = p.parse_args()

    if args.cmd == "plot":
        print(plot_soak(Path(args.csv)))
        return 0
    if args.cmd == "list":
        for name, spec in SCENARIOS.items():
            print(f"{name:16} {'quick' if spec['quick'] else 'full '}  {spec['doc']}")
        return 0

    names = []
    for n in args.names:
        if n == "all":
            names += [k for k in SCENARIOS if k != "soak"]
        elif n == "quick":
            names += [k for k, v in SCENARIOS.items() if v["quick"]]
        elif n in SCENARIOS:
            names.append(n)
        else:
            p.error(f"unknown scenario {n}; see `faults.py list`")
    binary = Path(args.bin).resolve()
    if not binary.exists():
        p.error(f"{binary} does not exist: build it first (make build)")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sqs2pg-faults-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # the postgres user must reach the cluster below it
    results = []
    command = shlex.join(["tests/faults/faults.py"] + sys.argv[1:])
    try:
        seq = 0
        for name in names:
            for i in range(1 if name == "failover" else args.runs):
                seq += 1
                results.append(run_one(name, args, base / f"{seq:02d}-{name}", binary, seq))
    except KeyboardInterrupt:
        log("interrupted")
        Proc.kill_all()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"kept {base}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")
    if args.report:
        with open(args.report, "a") as f:
            f.write(f"\n### `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n")
            for res in results:
                f.write(f"- **{res['name']}**: {res['status']} ({res['seconds']:.0f} s, {res['runs']} sqs2pg runs) — "
                        f"faults: {res['faults'] or '-'} — {res['outcome']}\n")
                for note in res["notes"]:
                    f.write(f"  - {note}\n")
    passed = sum(r["status"] == "PASS" for r in results)
    print(f"faults: {passed} of {len(results)} scenario runs passed", flush=True)
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
