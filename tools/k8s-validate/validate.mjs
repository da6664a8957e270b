// Validates every object of rendered Kubernetes YAML files against the API's schemas, offline:
// kubernetes-models (the core API) and its KEDA and Prometheus Operator packages, pinned in
// package-lock.json. Prints one line per object; exit 1 if any is unknown or invalid.
// Usage: node validate.mjs RENDERED.yaml...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const packages = {
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
  const path = group === null ? `kubernetes-models/${version}/${kind}`
    : `${packages[group] ?? "kubernetes-models"}/${group}/${version}/${kind}`;
  const module = await import(path);
  return module[kind];
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj) continue;
    const what = `${file.split("/").pop()}: ${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}`;
    try {
      const Model = await modelFor(obj.apiVersion, obj.kind);
      new Model(obj).validate();
      console.log(`ok   ${what}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${what}: ${e.message.split("\n").slice(0, 6).join("; ")}`);
    }
  }
}
process.exit(failed ? 1 : 0);
