"""A real Kubernetes control plane on loopback, for the real-cluster and the real-pod tests.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the KubeRay operator and, for tests/cluster,
KWOK (which plays the kubelets of the simulated nodes), built by tools/cluster/build.sh into a cache outside
the clone. Everything listens on free loopback ports; every process is started here and stopped by its PID in
`stop`. CRDs and KWOK's stages are read from the Go module cache, never from copies in the repo.

tests/pods starts the same plane inside its own network namespace (`PodNetwork`): there the API server also
listens on the node's address, so that pods reach it through the `kubernetes` Service.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from rayvllm.procs import free_port
from repo_tools import REPO

BUILD_SCRIPT = REPO / "tools" / "cluster" / "build.sh"
NODES_FILE = REPO / "tools" / "cluster" / "nodes.yaml"
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator@v1.6.0"
KWOK_MODULE = "sigs.k8s.io/kwok@v0.8.0"
# Module -> its CRD files the chart's objects need (KubeRay's operator watches all of its own).
CRD_FILES = {
    KUBERAY_MODULE: ["config/crd/bases/*.yaml"],
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": [
        f"example/prometheus-operator-crd/monitoring.coreos.com_{kind}.yaml"
        for kind in ("podmonitors", "servicemonitors", "prometheusrules")
    ],
    # What KubeRay's NewClusterWithIncrementalUpgrade creates.
    "sigs.k8s.io/gateway-api@v1.4.1": [
        f"config/crd/standard/gateway.networking.k8s.io_{kind}.yaml"
        for kind in ("gatewayclasses", "gateways", "httproutes")
    ],
}
# KWOK's own stages: nodes become Ready and keep a lease; pods become Running, and go away when deleted.
KWOK_STAGES = [
    f"kustomize/stage/{name}/*.yaml" for name in ("node/fast", "node/heartbeat-with-lease", "pod/fast")
]
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node=fake"
STARTUP_TIMEOUT_S = 240.0
KWOK_SERVICE_CIDR = "10.96.0.0/16"  # KWOK's pods run nothing, so their addresses are never reached


@dataclass(frozen=True)
class PodNetwork:
    """Where a plane for real pods listens: all inside the test's network namespace, in 198.18.0.0/15."""

    node_ip: str  # the API server's advertised address, which pods reach
    service_cidr: str
    kubernetes_service_ip: str  # the first address of service_cidr: the `kubernetes` Service


STOP_TIMEOUT_S = 20.0

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 1.0) -> T:
    """Poll `probe` until it returns something other than None or False; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, OSError, KeyError) as error:  # not up yet
            last_error, result = error, None
        if result is not None and result is not False:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})")


def module_dir(module_at_version: str) -> Path:
    """A Go module's directory in the module cache (downloaded by tools/cluster/build.sh)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version], capture_output=True, text=True, check=True
    )
    return Path(json.loads(out.stdout)["Dir"])


def module_yaml_documents(module_at_version: str, patterns: list[str]) -> list[dict[str, Any]]:
    root = module_dir(module_at_version)
    paths = sorted(path for pattern in patterns for path in root.glob(pattern))
    # libyaml's loader: the CRDs are megabytes of YAML.
    documents = (yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) for path in paths)
    return [doc for docs in documents for doc in docs if doc and doc.get("kind") != "Kustomization"]


def cluster_bin_dir() -> Path:
    """The folder tools/cluster/build.sh builds into; fails with the command to run when it is not built."""
    out = subprocess.run([str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    if not (path / ".complete").exists():
        raise RuntimeError(f"the cluster binaries are not built in {path}: run `make setup-cluster`")
    return path


# --- certificates and kubeconfig ---------------------------------------------------------------------------


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    extensions: list[x509.ExtensionType],
) -> x509.Certificate:
    """A one-day certificate for `key`, signed by `issuer` (self-signed when None)."""
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
    return builder.sign(issuer_key, hashes.SHA256())


def _write_certificate(certificate: x509.Certificate, path: Path) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Credentials:
    """The files the control plane authenticates with: a CA, the API server's serving pair, an admin client
    pair (group system:masters) and the service-account signing pair."""

    ca: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_public_key: Path


def make_credentials(directory: Path, extra_ips: tuple[str, ...] = ()) -> Credentials:
    """A CA, and the pairs it signs, written to `directory`; the API server's certificate also names
    `extra_ips` (the addresses pods reach it at)."""
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rayvllm-test-ca")])
    ca = _certificate(ca_name, ca_key, None, [x509.BasicConstraints(ca=True, path_length=None)])
    serving_key, admin_key, service_account_key = _new_key(), _new_key(), _new_key()
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    serving = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key,
        (ca_name, ca_key),
        [
            x509.SubjectAlternativeName(
                [
                    *map(x509.DNSName, names),
                    *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", *extra_ips)),
                ]
            )
        ],
    )
    admin = _certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "rayvllm-test-admin"),
            ]
        ),
        admin_key,
        (ca_name, ca_key),
        [x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])],
    )
    names = ("ca.crt", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub")
    files = Credentials(*(directory / name for name in names))
    _write_certificate(ca, files.ca)
    _write_certificate(serving, files.serving_cert)
    _write_key(serving_key, files.serving_key)
    _write_certificate(admin, files.admin_cert)
    _write_key(admin_key, files.admin_key)
    _write_key(service_account_key, files.service_account_key)
    files.service_account_public_key.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return files


def write_kubeconfig(path: Path, server: str, credentials: Credentials) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(credentials.ca)}}
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(credentials.admin_cert),
                    "client-key": str(credentials.admin_key),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- the API ------------------------------------------------------------------------------------------------


class Kube:
    """A small client for the API server: JSON over HTTPS with the admin client certificate."""

    def __init__(self, server: str, credentials: Credentials) -> None:
        # An SSL context of our own: httpx 0.28 ignores its `cert=` argument next to `verify=<path>`.
        context = ssl.create_default_context(cafile=str(credentials.ca))
        context.load_cert_chain(str(credentials.admin_cert), str(credentials.admin_key))
        self.http = httpx.Client(base_url=server, verify=context, timeout=180)  # a loaded CI box is slow

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """GET, retried while the API server sheds load (429: a fresh CRD's endpoint, or a loaded machine)."""
        for _ in range(30):
            response = self.http.get(path, params=params)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self._get(path, params)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def find(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        response = self._get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(path, **params)["items"]
        return items

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=obj)
        if response.status_code >= 400:
            raise RuntimeError(
                f"POST {path} {obj.get('kind')}/{obj['metadata'].get('name')}: {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result

    def namespaced_kinds(self) -> Iterator[tuple[str, str]]:
        """(collection path, with `{ns}` for the namespace, and kind) of every namespaced kind."""
        versions = ["/api/v1"] + [
            f"/apis/{group['preferredVersion']['groupVersion']}" for group in self.get("/apis")["groups"]
        ]
        for prefix in versions:
            for resource in self.get(prefix)["resources"]:
                if resource["namespaced"] and "/" not in resource["name"] and "list" in resource["verbs"]:
                    yield f"{prefix}/namespaces/{{ns}}/{resource['name']}", resource["kind"]

    def objects_in(self, namespace: str) -> list[tuple[str, str]]:
        """(kind, name) of every object in `namespace`, of every kind that can be listed."""
        return [
            (kind, item["metadata"]["name"])
            for template, kind in self.namespaced_kinds()
            for item in self.items(template.format(ns=namespace))
        ]


# --- processes ----------------------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """The running control plane: its API, its kubeconfig and the processes to stop."""

    workdir: Path
    kubeconfig: Path
    kube: Kube
    credentials: Credentials
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    operator_metrics_url: str = ""
    """KubeRay's Prometheus endpoint (`kuberay_*`), on loopback."""

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def check_running(self) -> None:
        """Fail with the log tail of any component that exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def dns_servers_asked(self) -> set[str]:
        """The name servers KubeRay's failed lookups name in its log: they must all be the test's own."""
        log = (self.workdir / "kuberay-operator.log").read_text(errors="replace")
        return set(re.findall(r"lookup \S+ on ([0-9.]+):53", log))

    def stop(self) -> list[str]:
        """Stop every process by its PID, newest first (SIGTERM, then SIGKILL); return those that survived."""
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        survivors = []
        for name, process in reversed(self.processes.items()):
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    survivors.append(f"{name} (pid {process.pid})")
        self.kube.http.close()
        return survivors


def _start_etcd(plane: ControlPlane, bin_dir: Path) -> str:
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    plane.start(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=test",
            f"--data-dir={plane.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--unsafe-no-fsync",  # a throwaway store; fsync only slows the test down
            "--log-level=warn",
        ],
    )
    wait_for("etcd", lambda: httpx.get(f"{client}/health").json()["health"] == "true", STARTUP_TIMEOUT_S)
    return client


def _start_apiserver(
    plane: ControlPlane,
    bin_dir: Path,
    credentials: Credentials,
    etcd: str,
    port: int,
    network: PodNetwork | None,
) -> None:
    # Inside the pod network it listens on every address of the namespace, and advertises the node's.
    bind, advertise = ("0.0.0.0", network.node_ip) if network else ("127.0.0.1", "127.0.0.1")
    plane.start(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd}",
            f"--bind-address={bind}",
            f"--advertise-address={advertise}",
            f"--secure-port={port}",
            f"--tls-cert-file={credentials.serving_cert}",
            f"--tls-private-key-file={credentials.serving_key}",
            f"--client-ca-file={credentials.ca}",
            f"--service-account-key-file={credentials.service_account_public_key}",
            f"--service-account-signing-key-file={credentials.service_account_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={network.service_cidr if network else KWOK_SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    wait_for(
        "kube-apiserver /readyz", lambda: plane.kube.http.get("/readyz").status_code == 200, STARTUP_TIMEOUT_S
    )


def _start_controllers(plane: ControlPlane, bin_dir: Path, credentials: Credentials) -> None:
    """kube-controller-manager (garbage collector, namespaces, service accounts, ...) and kube-scheduler."""
    common = [f"--kubeconfig={plane.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
    plane.start(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            *common,
            f"--service-account-private-key-file={credentials.service_account_key}",
            f"--root-ca-file={credentials.ca}",
        ],
    )
    plane.start("kube-scheduler", [str(bin_dir / "kube-scheduler"), *common])
    wait_for(
        "the default ServiceAccount (kube-controller-manager)",
        lambda: plane.kube.find("/api/v1/namespaces/default/serviceaccounts/default"),
        STARTUP_TIMEOUT_S,
    )


def _install_crds(kube: Kube) -> None:
    crds = [doc for module, patterns in CRD_FILES.items() for doc in module_yaml_documents(module, patterns)]
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for crd in crds:
        kube.create(path, crd)
    for crd in crds:
        name = crd["metadata"]["name"]
        wait_for(
            f"CRD {name} established",
            lambda name=name: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in kube.get(f"{path}/{name}").get("status", {}).get("conditions", [])
            ),
            STARTUP_TIMEOUT_S,
        )


def _start_kuberay(plane: ControlPlane, bin_dir: Path, network: PodNetwork | None) -> None:
    probe_port, metrics_port = free_port(), free_port()
    # KubeRay calls each head's dashboard by its Service's DNS name. Those lookups must stay in the test: the
    # node's CoreDNS on a real node, and loopback (where nothing answers) beside KWOK, never the host's
    # resolver. A private mount namespace gives this one process its own /etc/resolv.conf (unshare then
    # execs, so the PID stays the operator's).
    resolv = plane.workdir / "operator-resolv.conf"
    resolv.write_text(f"nameserver {network.node_ip if network else '127.0.0.1'}\n")
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    resolver = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv)]
    plane.start(
        "kuberay-operator",
        [
            *resolver,
            str(bin_dir / "kuberay-operator"),
            f"--metrics-addr=127.0.0.1:{metrics_port}",
            "--enable-metrics",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}",
            "--enable-leader-election=false",
            # The chart offers NewClusterWithIncrementalUpgrade, which KubeRay 1.6 keeps behind this gate.
            "--feature-gates=RayServiceIncrementalUpgrade=true",
            "--log-stdout-encoder=console",
        ],
        env={"KUBECONFIG": str(plane.kubeconfig)},
    )
    wait_for(
        "the KubeRay operator /readyz",
        lambda: httpx.get(f"http://127.0.0.1:{probe_port}/readyz").status_code == 200,
        STARTUP_TIMEOUT_S,
    )
    plane.operator_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"


def _start_kwok(plane: ControlPlane, bin_dir: Path) -> None:
    stages = module_yaml_documents(KWOK_MODULE, KWOK_STAGES)
    config = plane.workdir / "kwok.yaml"
    # Stages only: a KwokConfiguration document would replace KWOK's defaults with zero values.
    config.write_text(yaml.safe_dump_all(stages))
    plane.start(
        "kwok",
        [
            str(bin_dir / "kwok"),
            f"--config={config}",
            f"--kubeconfig={plane.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.1",
        ],
    )


def node_manifests() -> list[dict[str, Any]]:
    """The Nodes of tools/cluster/nodes.yaml's pools, annotated for KWOK."""
    nodes = []
    for pool in yaml.safe_load(NODES_FILE.read_text())["pools"]:
        for index in range(1, pool["count"] + 1):
            name = f"{pool['name']}-{index}"
            labels = {
                **pool["labels"],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": pool["zones"][index % len(pool["zones"])],
                "rayvllm.test/pool": pool["name"],
                "rayvllm.test/capacity": pool["capacity"],
            }
            resources = {**pool["resources"], "pods": "110"}
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": dict([KWOK_NODE_ANNOTATION.split("=")]),
                    },
                    "spec": {"taints": pool.get("taints", [])},
                    "status": {"capacity": resources, "allocatable": resources},
                }
            )
    return nodes


def _create_nodes(plane: ControlPlane) -> list[str]:
    kube = plane.kube
    nodes = node_manifests()
    for node in nodes:
        kube.create("/api/v1/nodes", node)
    names = [node["metadata"]["name"] for node in nodes]

    def all_ready() -> bool:
        plane.check_running()  # a KWOK that exited fails here, not at the timeout
        ready = {
            node["metadata"]["name"]
            for node in kube.items("/api/v1/nodes")
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
            )
        }
        return ready >= set(names)

    wait_for("the KWOK nodes to be Ready", all_ready, STARTUP_TIMEOUT_S)
    return names


def start_control_plane(workdir: Path, network: PodNetwork | None = None) -> ControlPlane:
    """Start everything, in dependency order; on any failure stop what started and re-raise.

    Without `network`: KWOK and its simulated node pools (tests/cluster). With it: no KWOK, since a real
    kubelet registers its own node (tests/pods)."""
    bin_dir = cluster_bin_dir()
    extra_ips = (network.node_ip, network.kubernetes_service_ip) if network else ()
    credentials = make_credentials(workdir, extra_ips)
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, credentials)
    plane = ControlPlane(workdir, kubeconfig, Kube(server, credentials), credentials)
    try:
        etcd = _start_etcd(plane, bin_dir)
        _start_apiserver(plane, bin_dir, credentials, etcd, port, network)
        _start_controllers(plane, bin_dir, credentials)
        _install_crds(plane.kube)
        _start_kuberay(plane, bin_dir, network)
        if network is None:
            _start_kwok(plane, bin_dir)
            _create_nodes(plane)
        plane.check_running()
    except BaseException:
        plane.stop()
        raise
    return plane
