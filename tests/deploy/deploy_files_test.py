#!/usr/bin/env python3
"""deploy/ and docker-compose.yml against the sqs2pg they deploy.

No Docker engine or cluster runs here, so this checks what can drift, with sqs2pg itself as the
judge: every YAML document parses; probes, ports and grace periods agree with sqs2pg's endpoints
and shutdown timeout; the ConfigMap's TOML and every command line (Deployment, compose, systemd)
are accepted by `sqs2pg config <subcommand> ...`; every environment variable they set is one
sqs2pg reads (it shows each in `sqs2pg config run`); the unit passes `systemd-analyze verify`.
Then the compose file's sqs2pg commands run against the local stack (scripts/stack) with the same
flags: keygen, send, and run --follow until the sample data is loaded and /readyz answers 200.

Usage: deploy_files_test.py SQS2PG_BINARY SOURCE_DIR
"""
import glob
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

BIN = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def sqs2pg(args, env=None, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, env=env, timeout=30, **kw)


def clean_env(extra=None):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/nonexistent")}
    env.update(extra or {})
    return env


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# --- every YAML document parses (and every JSON file under deploy/) ---
yaml_files = sorted(glob.glob(f"{SRC}/deploy/**/*.y*ml", recursive=True)) + [f"{SRC}/docker-compose.yml"]
docs = {}
for path in yaml_files:
    try:
        docs[path] = load_yaml(path)
        check(True, f"parses: {os.path.relpath(path, SRC)} ({len(docs[path])} documents)")
    except yaml.YAMLError as e:
        check(False, f"parses: {os.path.relpath(path, SRC)}: {e}")
for path in sorted(glob.glob(f"{SRC}/deploy/**/*.json", recursive=True)):
    with open(path) as f:
        json.load(f)
    check(True, f"parses: {os.path.relpath(path, SRC)}")

# sqs2pg's own facts: its probe paths (from the source) and its default shutdown timeout.
http_server = open(f"{SRC}/src/metrics/http_server.cc").read()
for path in ("/healthz", "/readyz", "/metrics"):
    check(f'"{path}"' in http_server, f"sqs2pg serves {path}")
markdown = sqs2pg(["config", "--markdown"]).stdout
m = re.search(r"`--shutdown-timeout S` \|[^|]*\|[^|]*\|[^|]*\| `(\d+)`", markdown)
check(m is not None, "sqs2pg config --markdown gives --shutdown-timeout's default")
shutdown_default = int(m.group(1)) if m else 20


def by_kind(kind):
    return [d for path, ds in docs.items() if "/kubernetes/base/" in path for d in ds if d.get("kind") == kind]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def flag_value(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


def env_accepted(env, where, config_file=None):
    """Every variable in env is one sqs2pg reads: `sqs2pg config run` names each one it uses."""
    env = dict(env)
    if "SQS2PG_CONFIG" in env:
        env["SQS2PG_CONFIG"] = config_file or f"{SRC}/deploy/sqs2pg.toml"
    r = sqs2pg(["config", "run"], env=clean_env(env))
    check(r.returncode == 0, f"{where}: sqs2pg config run accepts its environment ({r.stderr.strip()[:200]})")
    for name in env:
        check(name in r.stdout, f"{where}: sqs2pg reads {name}")


# --- Kubernetes ---
deployment = by_kind("Deployment")[0]
pod = deployment["spec"]["template"]["spec"]
container = pod["containers"][0]
args = container["args"]
metrics_port = port_of(flag_value(args, "--metrics-addr"))
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = container[probe]["httpGet"]
    check(get["path"] == path, f"Deployment {probe} asks {path}")
    check(ports.get(get["port"], get["port"]) == metrics_port, f"Deployment {probe} port is --metrics-addr's ({metrics_port})")
pm = by_kind("PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]
check(pm["path"] == "/metrics" and ports.get(pm["port"]) == metrics_port, "PodMonitor scrapes /metrics on the metrics port")

configmap = by_kind("ConfigMap")[0]
tmp = tempfile.mkdtemp(prefix="deploy_files_test.")
toml_path = os.path.join(tmp, "sqs2pg.toml")
with open(toml_path, "w") as f:
    f.write(configmap["data"]["sqs2pg.toml"])
for name, path in (("ConfigMap sqs2pg.toml", toml_path),
                   ("overlay sqs2pg.toml", f"{SRC}/deploy/kubernetes/overlays/example/sqs2pg.toml"),
                   ("deploy/sqs2pg.toml", f"{SRC}/deploy/sqs2pg.toml")):
    r = sqs2pg(["config", "run", "--config", path], env=clean_env())
    check(r.returncode == 0, f"{name}: sqs2pg config run --config accepts it ({r.stderr.strip()[:200]})")
r = sqs2pg(["config", "run", "--config", toml_path] + args[1:], env=clean_env())
check(r.returncode == 0, f"Deployment args with the ConfigMap: sqs2pg config {' '.join(args)} ({r.stderr.strip()[:200]})")
m = re.search(r"^shutdown-timeout = (\d+)", r.stdout, re.M)
k8s_shutdown = int(m.group(1)) if m else shutdown_default
check(pod["terminationGracePeriodSeconds"] > k8s_shutdown,
      f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > shutdown-timeout {k8s_shutdown}")
env_accepted({e["name"]: e.get("value", "x") for e in container["env"]}, "Deployment env", toml_path)
check(pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
      and not container["securityContext"]["allowPrivilegeEscalation"]
      and container["securityContext"]["capabilities"]["drop"] == ["ALL"], "Deployment securityContext is restricted")
key_file = re.search(r'^key-file = "(.*)"', configmap["data"]["sqs2pg.toml"], re.M).group(1)
mounts = {v["mountPath"]: v for v in container["volumeMounts"]}
check(os.path.dirname(key_file) in mounts and mounts[os.path.dirname(key_file)].get("readOnly"),
      f"the keyring {key_file} is on a read-only mount")
so = by_kind("ScaledObject")[0]
trigger = so["spec"]["triggers"][0]
check(trigger["type"] == "aws-sqs-queue" and so["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"],
      "ScaledObject scales the Deployment on aws-sqs-queue")
ta = by_kind("TriggerAuthentication")[0]["spec"]["podIdentity"]
check(ta["provider"] == "aws", "TriggerAuthentication uses the aws pod identity provider")
sa = by_kind("ServiceAccount")[0]
check("eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"] and pod["serviceAccountName"] == sa["metadata"]["name"],
      "the Deployment runs as the IRSA-annotated ServiceAccount")

cron = by_kind("CronJob")[0]
cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
cron_container = cron_pod["containers"][0]
r = sqs2pg(["config", "maintain", "--config", toml_path] + cron_container["args"][1:], env=clean_env())
check(cron_container["args"][0] == "maintain" and r.returncode == 0,
      f"CronJob args with the ConfigMap: sqs2pg config {' '.join(cron_container['args'])} ({r.stderr.strip()[:200]})")
check(re.search(r"^db = .*user=.*# .*sqs2pg\.toml:\d+$", r.stdout, re.M) is not None,
      "the ConfigMap's [maintain] section names the owner's connection")
env_accepted({e["name"]: e.get("value", "x") for e in cron_container["env"]}, "CronJob env", toml_path)
check(cron["spec"]["concurrencyPolicy"] == "Forbid" and cron_container["securityContext"]["readOnlyRootFilesystem"]
      and cron_pod["securityContext"]["runAsNonRoot"], "CronJob: one at a time, restricted")
for name, path in (("overlay sqs2pg.toml", f"{SRC}/deploy/kubernetes/overlays/example/sqs2pg.toml"),
                   ("deploy/sqs2pg.toml", f"{SRC}/deploy/sqs2pg.toml")):
    r = sqs2pg(["config", "maintain", "--config", path], env=clean_env())
    check(r.returncode == 0 and "message-retention = 345600" in r.stdout,
          f"{name}: sqs2pg config maintain --config accepts its [maintain] section ({r.stderr.strip()[:200]})")

# --- docker-compose.yml and the Dockerfile ---
compose = docs[f"{SRC}/docker-compose.yml"][0]
services = compose["services"]
sqs2pg_services = {n: s for n, s in services.items() if s.get("image") == "sqs2pg:local"}
check(set(sqs2pg_services) == {"keygen", "sender", "sqs2pg"}, f"compose's sqs2pg services: {sorted(sqs2pg_services)}")


def compose_args(service):
    if service.get("entrypoint"):  # keygen: sh -c '... exec sqs2pg keygen ...'
        return shlex.split(service["entrypoint"][-1].split("exec sqs2pg ", 1)[1])
    return list(service["command"])


run_service = services["sqs2pg"]
run_args = compose_args(run_service)
compose_port = port_of(flag_value(run_args, "--metrics-addr"))
check(f"127.0.0.1:{compose_port}:{compose_port}" in run_service["ports"], f"compose publishes the metrics port {compose_port}")
grace = int(str(run_service["stop_grace_period"]).rstrip("s"))
check(grace > shutdown_default, f"compose stop_grace_period {grace}s > shutdown-timeout {shutdown_default}")
for name, service in sqs2pg_services.items():
    args_ = [a.replace("/data/", f"{SRC}/data/") for a in compose_args(service)]
    if args_[0] == "keygen":  # config keygen checks --out is not there yet
        args_ = [a.replace("/var/lib/sqs2pg/", tmp + "/") for a in args_]
    r = sqs2pg(["config"] + args_, env=clean_env())
    check(r.returncode == 0, f"compose {name}: sqs2pg config {' '.join(args_)} ({r.stderr.strip()[:200]})")
    env_accepted(service["environment"], f"compose {name} environment")
dockerfile = open(f"{SRC}/deploy/docker/Dockerfile").read()
hc = re.search(r"HEALTHCHECK .*\n.*http://127\.0\.0\.1:(\d+)(/\w+)", dockerfile)
check(hc is not None and hc.group(2) == "/healthz", "Dockerfile HEALTHCHECK asks /healthz")
check(f"SQS2PG_METRICS_ADDR=:{hc.group(1)}" in dockerfile and f"EXPOSE {hc.group(1)}" in dockerfile,
      "Dockerfile's HEALTHCHECK port is its SQS2PG_METRICS_ADDR and EXPOSE")
env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, re.M).group(1)
env_accepted(dict(re.findall(r"(SQS2PG_\w+)=(\S+)", env_block)), "Dockerfile ENV")

# --- systemd ---
unit_path = f"{SRC}/deploy/systemd/sqs2pg.service"
unit = open(unit_path).read()
exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
check(exec_start[0] == "/usr/bin/sqs2pg", "the unit runs /usr/bin/sqs2pg (the .deb's path)")
r = sqs2pg(["config"] + exec_start[1:], env=clean_env())
check(r.returncode == 0, f"unit: sqs2pg config {' '.join(exec_start[1:])} ({r.stderr.strip()[:200]})")
unit_env = {}
for line in re.findall(r"^Environment=(.*)$", unit, re.M):
    for word in shlex.split(line):
        k, v = word.split("=", 1)
        unit_env[k] = v.replace("%d", tmp)
env_accepted(unit_env, "unit Environment")
stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
check(stop > shutdown_default, f"TimeoutStopSec {stop} > shutdown-timeout {shutdown_default}")
# Issue 17 item 14: no core file of the keys (sqs2pg also makes itself not dumpable at start).
for directive in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "LoadCredential=keyring:",
                  "LimitCORE=0"):
    check(directive in unit, f"the unit has {directive}")
test_unit = os.path.join(tmp, "sqs2pg.service")
with open(test_unit, "w") as f:
    f.write(unit.replace("/usr/bin/sqs2pg", BIN))
r = subprocess.run(["systemd-analyze", "verify", "--man=no", test_unit], capture_output=True, text=True)
check(r.returncode == 0 and not r.stderr.strip(), f"systemd-analyze verify ({r.stderr.strip()[:300]})")

# The daily maintain job: its command is accepted and both units verify.
maintain_unit = open(f"{SRC}/deploy/systemd/sqs2pg-maintain.service").read()
maintain_start = shlex.split(re.search(r"^ExecStart=(.*)$", maintain_unit, re.M).group(1))
r = sqs2pg(["config"] + maintain_start[1:], env=clean_env())
check(maintain_start[:2] == ["/usr/bin/sqs2pg", "maintain"] and r.returncode == 0,
      f"maintain unit: sqs2pg config {' '.join(maintain_start[1:])} ({r.stderr.strip()[:200]})")
for line in re.findall(r"^Environment=(.*)$", maintain_unit, re.M):
    env_accepted(dict(w.split("=", 1) for w in shlex.split(line)), "maintain unit Environment")
check(re.search(r"^LimitCORE=0$", maintain_unit, re.M) is not None, "the maintain unit has LimitCORE=0")
for manifest in ("deployment.yaml", "maintain-cronjob.yaml"):
    text = open(f"{SRC}/deploy/kubernetes/base/{manifest}").read()
    check("core dump" in text.lower() and "PR_SET_DUMPABLE" in text,
          f"{manifest} says how core dumps of the keys are prevented")
maintain_dir = os.path.join(tmp, "maintain-units")
os.makedirs(maintain_dir)
for name in ("sqs2pg-maintain.service", "sqs2pg-maintain.timer"):
    with open(os.path.join(maintain_dir, name), "w") as f:
        f.write(open(f"{SRC}/deploy/systemd/{name}").read().replace("/usr/bin/sqs2pg", BIN))
r = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(maintain_dir, "sqs2pg-maintain.timer"),
                    os.path.join(maintain_dir, "sqs2pg-maintain.service")], capture_output=True, text=True)
check(r.returncode == 0 and not r.stderr.strip(), f"systemd-analyze verify the maintain timer and service ({r.stderr.strip()[:300]})")

# --- compose's commands, run against the local stack with the same flags ---
stack_dir = os.path.join(tmp, "stack")
stack = [f"{SRC}/scripts/stack"]
run_proc = None
try:
    env_file = subprocess.run(stack + ["up", "--dir", stack_dir], capture_output=True, text=True, check=True).stdout.strip()
    stack_env = dict(re.findall(r"(\w+)=(\S+)", open(env_file).read()))
    base_env = dict(services["sender"]["environment"])
    base_env["AWS_ENDPOINT_URL_SQS"] = stack_env["AWS_ENDPOINT_URL_SQS"]  # the emulator's address here

    keyring = os.path.join(tmp, "keyring")
    r = sqs2pg(["keygen", "--out", keyring], env=clean_env())
    check(r.returncode == 0, "compose keygen: sqs2pg keygen --out <keyring>")
    send_args = [a.replace("/data/", f"{SRC}/data/") for a in compose_args(services["sender"])]
    r = sqs2pg(send_args, env=clean_env(base_env))
    check(r.returncode == 0, f"compose sender: sqs2pg {' '.join(send_args)} ({r.stderr.strip()[-300:]})")

    with socket.socket() as s:  # a free port for :9800, which another test may hold
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args_ = [a if a != f":{compose_port}" else f":{port}" for a in run_args]
    run_env = dict(run_service["environment"])
    run_env.update(AWS_ENDPOINT_URL_SQS=stack_env["AWS_ENDPOINT_URL_SQS"], SQS2PG_KEY_FILE=keyring,
                   SQS2PG_DB=f"host=127.0.0.1 port={stack_env['PGPORT']} dbname={stack_env['PGDATABASE']} user={stack_env['PGUSER']}")
    run_env.pop("PGPASSWORD")  # the stack's cluster trusts loopback
    subprocess.run(["psql", "-qc", "DROP TABLE IF EXISTS user_logins, user_logins_ledger, user_logins_rejects"],
                   env=clean_env(stack_env), check=True, capture_output=True)
    run_proc = subprocess.Popen([BIN] + args_, env=clean_env(run_env), stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "run.log"), "w"))
    sent = len(json.loads(subprocess.run(["zcat", f"{SRC}/data/sample_data.json.gz"], capture_output=True, check=True).stdout))
    ready, done = False, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (ready and done == sent):
        time.sleep(0.3)
        try:
            ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
        except OSError:
            ready = False
        q = subprocess.run(["psql", "-tAc", "SELECT (SELECT count(*) FROM user_logins) + (SELECT count(*) FROM user_logins_rejects)"],
                           env=clean_env(stack_env), capture_output=True, text=True)
        done = int(q.stdout.strip()) if q.returncode == 0 and q.stdout.strip() else 0
    check(ready, f"compose sqs2pg: /readyz answers 200 on --metrics-addr :{port}")
    check(done == sent, f"compose sqs2pg: {done} of {sent} sample messages loaded or rejected")
    run_proc.send_signal(signal.SIGTERM)
    rc = run_proc.wait(timeout=shutdown_default + 5)
    check(rc == 0, f"compose sqs2pg: exits 0 on SIGTERM (rc {rc})")
    run_proc = None
finally:
    if run_proc is not None:
        run_proc.kill()
        run_proc.wait()
    subprocess.run(stack + ["down", "--dir", stack_dir], capture_output=True)

if failures:
    print(f"{len(failures)} failed:", *failures, sep="\n  ")
    if os.path.exists(os.path.join(tmp, "run.log")):
        print(open(os.path.join(tmp, "run.log")).read()[-2000:])
    sys.exit(1)
subprocess.run(["rm", "-rf", tmp])
print("deploy_files_test: all checks passed")
