"""The chart's PodMonitors as a plain Prometheus configuration, the way the Prometheus Operator generates it.

No Prometheus Operator runs here, so this is the operator's translation, done by hand for what the chart's
monitors use: a `kubernetes_sd_configs` pod role in the monitor's namespaces, `keep` on the selector's
labels and on the endpoint's port name, the operator's standard target labels, then the endpoint's own
relabelings. Prometheus then discovers the real pods through the API server and scrapes them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "action": "action",
    "regex": "regex",
    "replacement": "replacement",
    "separator": "separator",
    "modulus": "modulus",
}


def _label_meta(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _relabel(rule: dict[str, Any]) -> dict[str, Any]:
    # The operator lower-cases the action; Prometheus accepts the same names.
    return {RELABEL_KEYS[key]: value for key, value in rule.items() if key in RELABEL_KEYS}


def scrape_configs(monitors: list[dict[str, Any]], kubeconfig: Path, interval: str) -> list[dict[str, Any]]:
    """One job per PodMonitor endpoint, named as the operator names it: podMonitor/<ns>/<name>/<index>."""
    jobs = []
    for monitor in monitors:
        spec, meta = monitor["spec"], monitor["metadata"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [meta["namespace"]]
        keep_selector = [
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{_label_meta(key)}",
                    f"__meta_kubernetes_pod_labelpresent_{_label_meta(key)}",
                ],
                "regex": f"({re.escape(value)});true",
            }
            for key, value in spec["selector"].get("matchLabels", {}).items()
        ]
        for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
            job = f"podMonitor/{meta['namespace']}/{meta['name']}/{index}"
            jobs.append(
                {
                    "job_name": job,
                    # Faster than the chart's 30 s, so a test sees samples within seconds.
                    "scrape_interval": interval,
                    "metrics_path": endpoint.get("path", "/metrics"),
                    "kubernetes_sd_configs": [
                        {
                            "role": "pod",
                            "kubeconfig_file": str(kubeconfig),
                            "namespaces": {"names": namespaces},
                        }
                    ],
                    "relabel_configs": [
                        *keep_selector,
                        {
                            "action": "keep",
                            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                            "regex": endpoint["port"],
                        },
                        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                        {
                            "source_labels": ["__meta_kubernetes_pod_container_name"],
                            "target_label": "container",
                        },
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                        {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
                        {"target_label": "endpoint", "replacement": endpoint["port"]},
                        *(_relabel(rule) for rule in endpoint.get("relabelings", [])),
                    ],
                    "metric_relabel_configs": [
                        _relabel(rule) for rule in endpoint.get("metricRelabelings", [])
                    ],
                }
            )
    return jobs
