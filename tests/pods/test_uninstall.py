"""The last real-pod test (after test_under_load.py): `helm uninstall` leaves no pod and no container."""

from __future__ import annotations

from control_plane import wait_for
from pod_support import NAMESPACE, RELEASE, Release, pods


def test_uninstall_leaves_no_pod_and_no_container(release: Release) -> None:
    cluster = release.cluster
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m")
    wait_for("the release's pods to go", lambda: not pods(cluster), 300, 2.0)
    # kubelet removes a deleted pod's sandbox in its garbage collection, once a minute.
    wait_for(
        "containerd to hold no container",
        lambda: not cluster.node.containers(),
        180,
        5.0,
    )
    assert cluster.node.tasks() == []
