#!/usr/bin/env python3
"""docker-compose.yml, rewritten for deploy_test.sh's host network.

No container network may carry traffic here (only loopback), so every service shares the host's
network: each service name the file uses as a host (postgres, sqs) resolves to 127.0.0.1 through
extra_hosts, published ports are dropped (nothing to publish on the host network), and the three
fixed ports move to free ones, each where the image itself takes it (Postgres: PGPORT; fauxqs:
FAUXQS_PORT; sqs2pg: --metrics-addr) and where the file names it (the healthchecks, the endpoint
URL, the DB connection). If the host reaches npm through a TLS proxy (NODE_EXTRA_CA_CERTS), the
emulator's container gets that CA file for npx. Everything else is the file as it is.

Usage: compose_host_network.py IN OUT PG_PORT SQS_PORT METRICS_PORT
"""
import os
import sys

import yaml

src, out, pg_port, sqs_port, metrics_port = sys.argv[1:6]
with open(src) as f:
    compose = yaml.safe_load(f)


def swap(value):
    if isinstance(value, str):
        return (value.replace("sqs:4566", f"sqs:{sqs_port}").replace("127.0.0.1:4566", f"127.0.0.1:{sqs_port}")
                .replace("host=postgres ", f"host=postgres port={pg_port} ").replace(":9800", f":{metrics_port}"))
    if isinstance(value, list):
        return [swap(v) for v in value]
    if isinstance(value, dict):
        return {k: swap(v) for k, v in value.items()}
    return value


services = compose["services"]
for name, service in services.items():
    services[name] = service = swap(service)
    service.pop("ports", None)
    service["network_mode"] = "host"
    service["extra_hosts"] = ["postgres:127.0.0.1", "sqs:127.0.0.1"]
services["postgres"].setdefault("environment", {})["PGPORT"] = pg_port
services["sqs"]["environment"].update(FAUXQS_PORT=sqs_port, FAUXQS_HOST="127.0.0.1")  # loopback only
# Where the machine reaches the npm registry through a TLS proxy whose CA only the host trusts
# (NODE_EXTRA_CA_CERTS names it), npx in the emulator's container is given the same CA file.
ca = os.environ.get("NODE_EXTRA_CA_CERTS")
if ca and os.path.isfile(ca):
    services["sqs"].setdefault("volumes", []).append(f"{ca}:/etc/ssl/registry-ca.crt:ro")
    services["sqs"]["environment"]["NODE_EXTRA_CA_CERTS"] = "/etc/ssl/registry-ca.crt"
with open(out, "w") as f:
    yaml.safe_dump(compose, f, sort_keys=False)
