#!/usr/bin/env bash
# Install the real-pod node's Debian packages if any is missing, then build its images (build-image.sh):
#   containerd 1.6 and runc (the container runtime), the CNI plugins (bridge, host-local, portmap, loopback),
#   iptables and conntrack (kube-proxy), debootstrap (the image's base layer), redis-server (the GCS's external
#   store, run by tests/pods/gcs_redis.py).
# kubelet, kube-proxy, CoreDNS and pause are Go/C builds of tools/cluster/build.sh. Needs root, as the suite does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=(containerd runc containernetworking-plugins iptables conntrack debootstrap redis-server)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || { echo "pods-setup: installing ${missing[*]} needs root" >&2; exit 1; }
  echo "pods-setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The suite runs its own containerd and redis-server; the packages' init scripts start no service of theirs
  # (policy-rc.d's 101, for the time of the install only).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$here/build-image.sh"
