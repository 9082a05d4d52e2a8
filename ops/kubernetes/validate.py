#!/usr/bin/env python3
"""Validates the kustomize base in ops/kubernetes/base, as CI does:

- every built-in resource strictly against the Kubernetes OpenAPI schemas (kubernetes-validate
  --strict: unknown fields are errors), for the oldest Kubernetes version AKS still supports here;
- the custom resources (Prometheus Operator ServiceMonitor, KEDA ScaledObject and
  TriggerAuthentication), which no Kubernetes schema knows, against strict schemas of the fields
  their CRDs define that we use (unknown fields are errors here too);
- kustomization.yaml lists every manifest of the directory, and nothing else;
- the ConfigMaps carry pipelines/dogbook.yaml and pipelines/agent-collector.yaml unchanged.

    pip install kubernetes-validate && python3 ops/kubernetes/validate.py
"""
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.31.0"
HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "base")
ROOT = os.path.dirname(os.path.dirname(HERE))


def strict(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STRING = {"type": "string"}
INT = {"type": "integer"}
METADATA = strict({"name": STRING, "namespace": STRING, "labels": {"type": "object"}, "annotations": {"type": "object"}}, ["name"])
LABEL_SELECTOR = strict({"matchLabels": {"type": "object", "additionalProperties": STRING}})

CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): strict({
        "apiVersion": STRING, "kind": STRING, "metadata": METADATA,
        "spec": strict({
            "selector": LABEL_SELECTOR,
            "namespaceSelector": strict({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": STRING}}),
            "endpoints": {"type": "array", "minItems": 1, "items": strict({
                "port": STRING, "path": STRING, "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                "scrapeTimeout": STRING, "scheme": {"enum": ["http", "https"]},
                "scrapeProtocols": {"type": "array", "items": {"enum": [
                    "PrometheusProto", "OpenMetricsText0.0.1", "OpenMetricsText1.0.0", "PrometheusText0.0.4", "PrometheusText1.0.0"]}},
            }, ["port"])},
        }, ["selector", "endpoints"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("keda.sh/v1alpha1", "ScaledObject"): strict({
        "apiVersion": STRING, "kind": STRING, "metadata": METADATA,
        "spec": strict({
            "scaleTargetRef": strict({"name": STRING, "kind": STRING, "apiVersion": STRING}, ["name"]),
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": INT, "cooldownPeriod": INT, "idleReplicaCount": INT,
            "advanced": strict({"restoreToOriginalReplicaCount": {"type": "boolean"},
                                "horizontalPodAutoscalerConfig": strict({"name": STRING, "behavior": {"type": "object"}})}),
            "triggers": {"type": "array", "minItems": 1, "items": strict({
                "type": STRING, "name": STRING, "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "metadata": {"type": "object", "additionalProperties": STRING},
                "authenticationRef": strict({"name": STRING, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}, ["name"]),
            }, ["type", "metadata"])},
        }, ["scaleTargetRef", "triggers"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): strict({
        "apiVersion": STRING, "kind": STRING, "metadata": METADATA,
        "spec": strict({
            "secretTargetRef": {"type": "array", "items": strict({"parameter": STRING, "name": STRING, "key": STRING},
                                                                  ["parameter", "name", "key"])},
            "env": {"type": "array"},
        }),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}


def main():
    failures = []
    manifests = sorted(f for f in os.listdir(BASE) if f.endswith(".yaml") and f != "kustomization.yaml")
    with open(os.path.join(BASE, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    if sorted(kustomization.get("resources", [])) != manifests:
        failures.append(f"kustomization.yaml resources {sorted(kustomization.get('resources', []))} != manifests {manifests}")

    resources = {}
    for name in manifests:
        with open(os.path.join(BASE, name)) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for document in documents:
            key = (document.get("apiVersion"), document.get("kind"))
            label = f"{name}: {key[1]}/{document.get('metadata', {}).get('name')}"
            resources[(key[1], document.get("metadata", {}).get("name"))] = document
            if key in CUSTOM:
                try:
                    jsonschema.validate(document, CUSTOM[key])
                    print(f"ok    {label} (custom resource schema)")
                except jsonschema.ValidationError as error:
                    failures.append(f"{label}: {error.message} at {'/'.join(map(str, error.absolute_path))}")
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
                print(f"ok    {label} (Kubernetes {KUBERNETES_VERSION}, strict)")
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{label}: {error.message} at {'/'.join(map(str, error.path))}")
            except kubernetes_validate.SchemaNotFoundError as error:
                failures.append(f"{label}: no schema ({error})")

    for (configmap, key, source) in [("tailgate-rules", "rules.yaml", "pipelines/dogbook.yaml"),
                                      ("otel-agent", "config.yaml", "pipelines/agent-collector.yaml")]:
        with open(os.path.join(ROOT, source)) as f:
            expected = f.read()
        actual = resources.get(("ConfigMap", configmap), {}).get("data", {}).get(key)
        if actual != expected:
            failures.append(f"ConfigMap {configmap} {key} differs from {source}")
        else:
            print(f"ok    ConfigMap {configmap} carries {source}")

    for failure in failures:
        print(f"FAIL  {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
