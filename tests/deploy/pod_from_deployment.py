#!/usr/bin/env python3
"""The Deployment's pod, as podman commands (deploy_test.sh step 5).

Reads the rendered base (kubectl kustomize) and writes OUT/init.sh and OUT/main.sh, which
deploy_test.sh sources, plus OUT/config/sqs2pg.toml and OUT/main.name. Taken from the manifest as
it is: the image's command and args, the pod's runAsUser/runAsGroup/fsGroup, each container's
readOnlyRootFilesystem, allowPrivilegeEscalation and dropped capabilities, the memory limit, the
env, and the volumes at their mount paths (the ConfigMap's file by subPath, the Secret directory,
the memory-backed emptyDir as a tmpfs volume both containers share, group fsGroup).
What the test changes, because there is no cluster: the ConfigMap's db names the local stack, the
metrics port is a free one (the host's network is shared), the Secret's PGPASSWORD is a
placeholder, and AWS comes from the emulator's endpoint and placeholder keys where IRSA would
inject a role. The Secret volume is prepared by deploy_test.sh (root's file, group fsGroup, 0440).

Usage: pod_from_deployment.py RENDERED.yaml OUT IMAGE PORT DB SQS_ENDPOINT
"""
import os
import re
import shlex
import sys

import yaml

rendered, out, image, port, db, endpoint = sys.argv[1:7]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
configmap = next(d for d in docs if d["kind"] == "ConfigMap")
pod = deployment["spec"]["template"]["spec"]
os.makedirs(f"{out}/config", exist_ok=True)

toml = configmap["data"]["sqs2pg.toml"]
toml = re.sub(r'^db = ".*"$', f'db = "{db}"', toml, count=1, flags=re.M)
with open(f"{out}/config/sqs2pg.toml", "w") as f:
    f.write(toml)
os.chmod(f"{out}/config/sqs2pg.toml", 0o644)

sc = pod["securityContext"]
assert sc["runAsNonRoot"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
run_id = os.environ.get("DEPLOY_TEST_ID", str(os.getppid()))
volume_name = f"sqs2pg-dt-{run_id}-keyring"
volumes = {}
for v in pod["volumes"]:
    if "configMap" in v:
        volumes[v["name"]] = ("config", f"{out}/config")
    elif "secret" in v:
        volumes[v["name"]] = ("secret", f"{out}/secret")
    elif v.get("emptyDir", {}).get("medium") == "Memory":
        volumes[v["name"]] = ("tmpfs", volume_name)
label = os.environ.get("DEPLOY_TEST_LABEL", "sqs2pg-deploy-test")
setup = [f"podman volume create --label {shlex.quote(label)} --opt type=tmpfs --opt device=tmpfs "
         f"--opt o=size=1m,mode=2770,gid={sc['fsGroup']} {volume_name} >/dev/null"]


def podman(container, name, detach):
    csc = container["securityContext"]
    cmd = ["podman", "run", "--network=host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           "--label", label, "--name", name,
           "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--group-add", str(sc["fsGroup"])]
    cmd += ["-d"] if detach else ["--rm"]
    if csc.get("readOnlyRootFilesystem"):
        cmd.append("--read-only")
    if csc.get("allowPrivilegeEscalation") is False:
        cmd.append("--security-opt=no-new-privileges")
    for cap in csc.get("capabilities", {}).get("drop", []):
        cmd.append(f"--cap-drop={cap}")
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        cmd.append(f"--memory={limit.replace('Mi', 'm')}")
    for m in container.get("volumeMounts", []):
        kind, source = volumes[m["name"]]
        ro = ":ro" if m.get("readOnly") else ""
        if kind == "config":
            cmd += ["-v", f"{source}/{m['subPath']}:{m['mountPath']}{ro}"]
        else:
            cmd += ["-v", f"{source}:{m['mountPath']}{ro}"]
    for e in container.get("env", []):
        if "value" in e:
            cmd += ["-e", f"{e['name']}={e['value']}"]
        else:  # a secretKeyRef: the stack's cluster trusts loopback, the value is a placeholder
            cmd += ["-e", f"{e['name']}=placeholder"]
    if "args" in container and "serviceAccountName" in pod:  # IRSA's stand-in: the emulator
        cmd += ["-e", f"AWS_ENDPOINT_URL_SQS={endpoint}", "-e", "AWS_ACCESS_KEY_ID=test",
                "-e", "AWS_SECRET_ACCESS_KEY=test"]
    command = container.get("command")
    if command:
        cmd += ["--entrypoint", command[0]]
    cmd.append(image)
    cmd += command[1:] if command else []
    cmd += [a.replace(":9800", f"127.0.0.1:{port}") for a in container.get("args", [])]
    return " ".join(shlex.quote(c) for c in cmd)


init = pod["initContainers"][0]
main = pod["containers"][0]
main_name = f"sqs2pg-dt-{run_id}-pod"
with open(f"{out}/init.sh", "w") as f:
    f.write("\n".join(setup) + "\n" + podman(init, f"sqs2pg-dt-{run_id}-init", False) + "\n")
with open(f"{out}/main.sh", "w") as f:
    f.write(podman(main, main_name, True) + " >/dev/null\n")
with open(f"{out}/main.name", "w") as f:
    f.write(main_name)
with open(f"{out}/grace", "w") as f:
    f.write(str(pod["terminationGracePeriodSeconds"]))
probes = {p: main[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
with open(f"{out}/probes", "w") as f:
    f.write(" ".join(f"{k}={v}" for k, v in probes.items()))
