#!/usr/bin/env python3
"""A consumer written the way the seed system works, as the baseline for bench/e2e.

boto3 + psycopg2, one process, one thread: receive up to 10 messages, then for each one parse it,
mask ip and device_id (SHA-256 with a salt, as seed-style take-homes do), INSERT it and COMMIT,
then DeleteMessage it. A message that fails the checks goes to <table>_rejects, also one row and
one commit at a time. It stops at the first receive that returns nothing (or at --max-seconds),
and prints one summary line in the same shape as `sqs2pg run`:

    received 2000, loaded 1940, duplicates skipped 0, rejected 60, deleted 2000, 41.20 s, 48.5 messages/s

Needs boto3 new enough to speak SQS's JSON protocol (botocore >= 1.34; Debian 12's python3-boto3
1.26 is too old) and psycopg2. The machine image's python3 (pyenv) has boto3 but not psycopg2, and
Debian's /usr/bin/python3 has psycopg2 (apt-get install python3-psycopg2) but not a usable boto3.
So when psycopg2 is missing this script adds Debian's /usr/lib/python3/dist-packages to the end of
sys.path, which works when both interpreters are the same minor version (3.11 on Debian 12).

Postgres comes from libpq's PG* variables (or --db); SQS from --endpoint-url and AWS_* variables.
"""
import argparse
import datetime
import hashlib
import importlib.util
import ipaddress
import json
import os
import sys
import time

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def import_deps():
    if importlib.util.find_spec("psycopg2") is None and os.path.isdir(os.path.join(DEBIAN_DIST_PACKAGES, "psycopg2")):
        sys.path.append(DEBIAN_DIST_PACKAGES)
    try:
        import boto3
        import botocore
        import psycopg2
    except ImportError as e:
        sys.exit(
            f"seed_baseline: {e}. Needs boto3 (>= 1.34) and psycopg2 in {sys.executable}; "
            "try: apt-get install python3-psycopg2 (used from the same-version python3 via "
            f"{DEBIAN_DIST_PACKAGES}) with the machine image's python3 for boto3"
        )
    ver = tuple(int(x) for x in botocore.__version__.split(".")[:2])
    if ver < (1, 34):
        print(
            f"seed_baseline: warning: botocore {botocore.__version__} may not speak SQS's JSON protocol",
            file=sys.stderr,
        )
    return boto3, psycopg2


LIMITS = {"user_id": 128, "device_type": 32, "locale": 32, "app_version": 15}


def check(body: str):
    """Returns (row fields, None) or (None, reason)."""
    try:
        m = json.loads(body)
    except ValueError:
        return None, "body is not JSON"
    if not isinstance(m, dict):
        return None, "body is not a JSON object"
    for f in ("user_id", "ip", "device_id"):
        if not isinstance(m.get(f), str) or not m[f]:
            return None, f"{f}: missing or not a non-empty string"
    try:
        ip = str(ipaddress.ip_address(m["ip"]))
    except ValueError:
        return None, "ip: not an IPv4 or IPv6 address"
    for f in ("device_type", "locale", "app_version"):
        if m.get(f) is not None and not isinstance(m[f], str):
            return None, f"{f}: not a string"
    for f, n in LIMITS.items():
        if isinstance(m.get(f), str) and len(m[f]) > n:
            return None, f"{f}: longer than {n}"
    return (m["user_id"], m.get("device_type"), ip, m["device_id"], m.get("locale"), m.get("app_version")), None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-deps", action="store_true", help="only check that boto3 and psycopg2 import, then exit")
    p.add_argument("--queue-url")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL_SQS"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--db", default="", help="libpq conninfo (default: PG* variables)")
    p.add_argument("--table", default="seed_user_logins")
    p.add_argument("--wait-seconds", type=int, default=2, help="long-poll wait of each receive (default 2)")
    p.add_argument("--max-seconds", type=float, default=3600, help="give up after this long (default 3600)")
    p.add_argument("--salt", default="seed-baseline-salt", help="salt for the SHA-256 masking")
    args = p.parse_args()

    boto3, psycopg2 = import_deps()
    if args.check_deps:
        print(f"boto3 {boto3.__version__} from {os.path.dirname(boto3.__file__)}, "
              f"psycopg2 {psycopg2.__version__.split()[0]} from {os.path.dirname(psycopg2.__file__)}")
        return 0
    if not args.queue_url:
        p.error("--queue-url is required")
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=args.region)
    conn = psycopg2.connect(args.db)
    cur = conn.cursor()
    t, rj = args.table, args.table + "_rejects"
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t} (user_id varchar(128), device_type varchar(32), masked_ip varchar(256),"
        " masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date)"
    )
    cur.execute(f"CREATE TABLE IF NOT EXISTS {rj} (message_id text, reason text, rejected_at timestamptz DEFAULT now())")
    conn.commit()

    def mask(v: str) -> str:
        return hashlib.sha256((args.salt + v).encode()).hexdigest()

    received = loaded = rejected = deleted = 0
    start = time.monotonic()
    deadline = start + args.max_seconds
    timed_out = False
    while True:
        if time.monotonic() > deadline:
            timed_out = True
            break
        resp = sqs.receive_message(
            QueueUrl=args.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=args.wait_seconds,
            AttributeNames=["SentTimestamp"],
        )
        msgs = resp.get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            received += 1
            fields, reason = check(m["Body"])
            if fields:
                sent_ms = int(m.get("Attributes", {}).get("SentTimestamp", time.time() * 1000))
                day = datetime.datetime.fromtimestamp(sent_ms / 1000, datetime.timezone.utc).date()
                user_id, device_type, ip, device_id, locale, app_version = fields
                cur.execute(
                    f"INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (user_id, device_type, mask(ip), mask(device_id), locale, app_version, day),
                )
                loaded += 1
            else:
                cur.execute(f"INSERT INTO {rj} (message_id, reason) VALUES (%s, %s)", (m["MessageId"], reason))
                rejected += 1
            conn.commit()
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])
            deleted += 1
    secs = time.monotonic() - start
    conn.close()
    print(
        f"received {received}, loaded {loaded}, duplicates skipped 0, rejected {rejected}, deleted {deleted}, "
        f"{secs:.2f} s, {received / secs if secs > 0 else 0:.1f} messages/s",
        flush=True,
    )
    if timed_out:
        print(f"seed_baseline: stopped after --max-seconds {args.max_seconds}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
