#!/usr/bin/env python3
"""What "receive and delete" alone allows from Python: the yardstick of issue 20.

boto3, --processes processes (default 4), each looping ReceiveMessage (10 messages, a short wait)
and DeleteMessageBatch of what it got, until a receive comes back empty twice in a row. No
parsing, no masking, no database: the way most teams would write a plain SQS consumer, doing no
other work. Prints one summary line in the shape `sqs2pg run` prints, so bench/e2e reads it:

    received 60000, loaded 0, duplicates skipped 0, rejected 0, deleted 60000, 9.80 s, 6122.4 messages/s

SQS from --endpoint-url and the AWS_* variables (botocore reads AWS_DEFAULT_REGION).
"""
import argparse
import multiprocessing
import os
import sys
import time


def consume(queue_url, endpoint, wait, counts):
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint,
                       region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION", "us-east-1"))
    received = deleted = empties = 0
    while empties < 2:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        messages = got.get("Messages", [])
        if not messages:
            empties += 1
            continue
        empties = 0
        received += len(messages)
        answer = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        deleted += len(answer.get("Successful", []))
    counts.put((received, deleted))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue-url", required=True)
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--wait-seconds", type=int, default=1, help="ReceiveMessage WaitTimeSeconds (default 1)")
    args = p.parse_args()
    counts = multiprocessing.Queue()
    t0 = time.monotonic()
    procs = [multiprocessing.Process(target=consume, args=(args.queue_url, args.endpoint_url, args.wait_seconds,
                                                          counts)) for _ in range(args.processes)]
    for proc in procs:
        proc.start()
    results = [counts.get() for _ in procs]
    for proc in procs:
        proc.join()
    secs = time.monotonic() - t0
    received = sum(r for r, _ in results)
    deleted = sum(d for _, d in results)
    line = (f"received {received}, loaded 0, duplicates skipped 0, rejected 0, deleted {deleted}, {secs:.2f} s, "
            f"{received / secs if secs else 0:.1f} messages/s")
    print(line, flush=True)
    return 0 if all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
