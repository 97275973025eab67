"""The rendered NetworkPolicy allows and denies the flows of issue #6, on pods labelled as KubeRay does.

The verdicts come from a small evaluator of the NetworkPolicy API's semantics (rules are ORed, a peer's
namespaceSelector and podSelector are ANDed, a peer without namespaceSelector means the policy's namespace,
named ports resolve on the destination pod, no ports means every port). No network plugin runs here, so this
checks the policy's intent, not a CNI's enforcement.

The pods get the labels KubeRay v1.6.0 gives them (ray-operator/controllers/ray/common/pod.go `labelPod`):
`ray.io/*` labels, then the pod template's labels on top, except that `ray.io/node-type`, `ray.io/group` and
`ray.io/cluster` cannot be overridden. The RayCluster's name is the RayService's plus a random suffix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chart_support import NAMESPACE, RENDER_CASES, rayservice

RAY_ONLY_PORTS = {6379, 8265, 10001, "gcs", "dashboard", "client"}
OPERATOR_NAMESPACE = "kuberay-system"
# Ports of the head: Serve, Ray's unauthenticated GCS, dashboard and client, the metrics, and a raylet port.
HEAD_PORTS = [8000, 6379, 8265, 10001, 8080, 44217, 44227, 45123]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace, labels, named container ports) or, with `namespace` None, an address outside."""

    name: str
    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)
    ip: str = "10.8.0.10"


def kuberay_pod(template: dict[str, Any], cluster: str, node_type: str, group: str) -> Endpoint:
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    fixed = {"ray.io/node-type", "ray.io/cluster", "ray.io/group"}
    labels.update({k: v for k, v in template["metadata"]["labels"].items() if k not in fixed})
    containers = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    return Endpoint(f"{cluster}-{node_type}", NAMESPACE, labels, ports)


def ray_pods(service: dict[str, Any], cluster: str) -> tuple[Endpoint, Endpoint]:
    spec = service["spec"]["rayClusterConfig"]
    head = kuberay_pod(spec["headGroupSpec"]["template"], cluster, "head", "headgroup")
    first = spec["workerGroupSpecs"][0]
    return head, kuberay_pod(first["template"], cluster, "worker", first["groupName"])


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        network = ipaddress.ip_network(block["cidr"])
        excluded = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        return address.version == network.version and address in network and not excluded
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], other.labels)


def port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, target: Endpoint) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        number = target.named_ports.get(wanted) if isinstance(wanted, str) else wanted
        if number is not None and number <= port <= entry.get("endPort", number):
            return True
    return False


def allowed(
    policy: dict[str, Any], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether this policy lets `source` open `port` on `target`, judged on both ends as Kubernetes does."""
    spec, namespace = policy["spec"], policy["metadata"]["namespace"]

    def isolated(pod: Endpoint, direction: str) -> bool:
        return (
            pod.namespace == namespace
            and direction in spec["policyTypes"]
            and selects(spec["podSelector"], pod.labels)
        )

    def rule_allows(rules: list[dict[str, Any]], peers_key: str, other: Endpoint) -> bool:
        return any(
            (peers_key not in rule or any(peer_matches(p, other, namespace) for p in rule[peers_key]))
            and port_matches(rule.get("ports"), port, protocol, target)
            for rule in rules
        )

    egress_ok = not isolated(source, "Egress") or rule_allows(spec.get("egress", []), "to", target)
    ingress_ok = not isolated(target, "Ingress") or rule_allows(spec.get("ingress", []), "from", source)
    return egress_ok and ingress_ok


def network_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (policy,) = [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
    return {**policy, "metadata": {**policy["metadata"], "namespace": NAMESPACE}}


@pytest.fixture(scope="module")
def defaults(render) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render([])
    return network_policy(objects), rayservice(objects)


def open_ports(policy: dict[str, Any], source: Endpoint, target: Endpoint) -> set[int]:
    return {port for port in HEAD_PORTS if allowed(policy, source, target, port)}


CLIENT = Endpoint("client", NAMESPACE, {"app": "chat-ui"})
INGRESS_CONTROLLER = Endpoint("ingress-nginx", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
STRANGER = Endpoint("stranger", "team-b", {"app": "notebook"})
PROMETHEUS = Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
OPERATOR = Endpoint("operator", OPERATOR_NAMESPACE, {"app.kubernetes.io/name": "kuberay-operator"})
OUTSIDE = Endpoint("internet", None, ip="203.0.113.7")


@pytest.mark.parametrize(
    ("source", "head_ports"),
    [
        (CLIENT, {8000}),
        (INGRESS_CONTROLLER, {8000}),
        (STRANGER, set()),
        (OUTSIDE, set()),
        (PROMETHEUS, {8080, 44217, 44227}),
        (OPERATOR, {8265, 8000}),
    ],
    ids=lambda value: value.name if isinstance(value, Endpoint) else None,
)
def test_what_each_source_outside_the_release_reaches_on_the_head(defaults, source, head_ports) -> None:
    policy, service = defaults
    head, worker = ray_pods(service, "llm-rayvllm-x7k2p")
    assert open_ports(policy, source, head) == head_ports
    # Workers have no dashboard, GCS, client or head metrics ports; the same sources reach their Serve and
    # metrics ports (the operator needs the Serve port on the head only, but it is open to clients anyway).
    assert open_ports(policy, source, worker) == head_ports & {8000, 8080}


def test_every_port_is_open_between_the_release_s_ray_pods_during_an_upgrade_too(defaults) -> None:
    policy, service = defaults
    head, worker = ray_pods(service, "llm-rayvllm-x7k2p")
    new_head, new_worker = ray_pods(service, "llm-rayvllm-q9w4z")
    for source, target in [(worker, head), (head, worker), (new_worker, head), (head, new_head)]:
        assert open_ports(policy, source, target) == set(HEAD_PORTS)


def test_ray_pods_of_another_release_reach_only_the_serve_port(defaults, render) -> None:
    policy, service = defaults
    head, _ = ray_pods(service, "llm-rayvllm-x7k2p")
    other = rayservice(render([], {"nameOverride": "other"}))
    other_head, other_worker = ray_pods(other, "llm-other-b3n8v")
    assert not selects(policy["spec"]["podSelector"], other_head.labels)
    # Same namespace, so serve.from's `podSelector: {}` admits it to 8000, and nothing else.
    assert open_ports(policy, other_worker, head) == {8000}


def test_the_policy_selects_exactly_the_release_s_kuberay_pods(defaults) -> None:
    policy, service = defaults
    head, worker = ray_pods(service, "llm-rayvllm-x7k2p")
    assert selects(policy["spec"]["podSelector"], head.labels)
    assert selects(policy["spec"]["podSelector"], worker.labels)
    # The template alone (no `ray.io/cluster` from KubeRay) is not selected: only KubeRay's pods are.
    template_labels = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert not selects(policy["spec"]["podSelector"], template_labels)


def test_egress_allows_dns_downloads_and_the_release_and_nothing_else(defaults) -> None:
    policy, service = defaults
    head, worker = ray_pods(service, "llm-rayvllm-x7k2p")
    hub = Endpoint("huggingface.co", None, ip="18.244.202.60")
    dns = Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
    database = Endpoint("postgres", "team-b", {"app": "postgres"}, {"pg": 5432})
    assert allowed(policy, worker, dns, 53, "UDP") and allowed(policy, worker, dns, 53, "TCP")
    assert allowed(policy, worker, hub, 443)
    assert not allowed(policy, worker, hub, 80) and not allowed(policy, worker, hub, 22)
    assert not allowed(policy, worker, database, 5432)
    assert allowed(policy, worker, head, 6379) and allowed(policy, head, worker, 45123)


def test_egress_reaches_the_gcs_redis_when_fault_tolerance_is_on(render) -> None:
    objects = render(RENDER_CASES["all-features"])
    policy = network_policy(objects)
    head, _ = ray_pods(rayservice(objects), "llm-rayvllm-x7k2p")
    redis = Endpoint("redis-master", "redis", {"app": "redis"}, {"redis": 6379})
    assert allowed(policy, head, redis, 6379)


def test_a_narrowed_operator_namespace_shuts_out_look_alikes(render) -> None:
    sets = {
        "networkPolicy.kuberayOperator.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name": (
            OPERATOR_NAMESPACE
        )
    }
    objects = render([], sets)
    policy = network_policy(objects)
    head, _ = ray_pods(rayservice(objects), "llm-rayvllm-x7k2p")
    look_alike = Endpoint("fake", "team-b", {"app.kubernetes.io/name": "kuberay-operator"})
    assert open_ports(policy, OPERATOR, head) == {8265, 8000}
    assert open_ports(policy, look_alike, head) == set()


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_ray_s_own_ports_open_only_within_the_release_and_to_the_operator(render, files: list[Path]) -> None:
    """Structurally, for every render: a rule that admits anyone but the release's Ray pods never names the
    GCS or client port, and only the operator's rule names the dashboard."""
    policy = network_policy(render(files))
    release_peer = policy["spec"]["podSelector"]
    for rule in policy["spec"]["ingress"]:
        if rule["from"] == [{"podSelector": release_peer}]:
            continue
        assert rule.get("ports"), f"a rule open to others opens every port: {rule}"
        names = {entry["port"] for entry in rule["ports"]}
        operator_rule = rule["from"][0].get("podSelector") == {
            "matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}
        }
        assert not names & (RAY_ONLY_PORTS - ({"dashboard"} if operator_rule else set())), rule


def test_the_head_s_disruption_budget_selects_the_head_as_kuberay_labels_it(render) -> None:
    objects = render([])
    (budget,) = [obj for obj in objects if obj["kind"] == "PodDisruptionBudget"]
    head, worker = ray_pods(rayservice(objects), "llm-rayvllm-x7k2p")
    assert selects(budget["spec"]["selector"], head.labels)
    assert not selects(budget["spec"]["selector"], worker.labels)
