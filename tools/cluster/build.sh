#!/usr/bin/env bash
# Build the real-cluster test's control plane from the Go module proxy, once, outside the clone:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler  (tools/cluster/k8s/go.mod: k8s.io/kubernetes
#                                                                   with its staging modules at their release)
#   kuberay-operator                                               (github.com/ray-project/kuberay/ray-operator)
#   kwok                                                           (sigs.k8s.io/kwok/cmd/kwok)
#   kubelet, kube-proxy                                            (the real-pod node, same `go build` as above)
#   coredns                                                        (github.com/coredns/coredns)
#   pause                                                          (k8s.io/kubernetes build/pause, static C)
# and fetch the modules whose CRDs the test installs (KubeRay's, the Prometheus Operator's, the Gateway API's).
# Output: ${RAYVLLM_CACHE:-~/.cache/rayvllm}/cluster/<key>/bin, where <key> hashes the pins, the go.mod/go.sum and
# the Go version, so a change of any builds into a new folder. A stamp there makes a rerun a no-op.
# usage: tools/cluster/build.sh           build if needed, print the bin folder
#        tools/cluster/build.sh --print   only print the bin folder (does not build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

kubernetes_version=v1.35.4  # also in k8s/go.mod; the staging modules are its v0.35.4
kuberay_version=v1.6.0      # the RayService CRDs the chart targets (tools/schemas.py reads the same module)
kwok_version=v0.8.0         # the newest on the proxy; needs go >= 1.26
coredns_version=v1.14.7
prometheus_operator_version=v0.85.0
gateway_api_version=v1.4.1  # NewClusterWithIncrementalUpgrade routes through a Gateway
crd_modules=(
  "github.com/ray-project/kuberay/ray-operator@$kuberay_version"
  "github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version"
  "sigs.k8s.io/gateway-api@$gateway_api_version"
)
build_format=2  # bump when the way the binaries are built changes

command -v go >/dev/null || { echo "cluster-build: the Go toolchain (go) is not on PATH" >&2; exit 1; }
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

key=$(echo "$build_format $kuberay_version $kwok_version $coredns_version $(go env GOVERSION)" |
  cat - "$here/k8s/go.mod" "$here/k8s/go.sum" | sha256sum | cut -c1-12)
bin=${RAYVLLM_CACHE:-$HOME/.cache/rayvllm}/cluster/$key/bin
if [[ ${1:-} == --print ]]; then echo "$bin"; exit 0; fi
stamp=$bin/.complete
if [[ -f $stamp ]]; then echo "cluster-build: up to date in $bin"; exit 0; fi
mkdir -p "$bin"

# The version the binaries report: Helm checks Chart.yaml's kubeVersion against the API server's.
minor=${kubernetes_version#v1.}
minor=${minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$kubernetes_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean"
done

# step NAME WHAT FUNCTION: run FUNCTION once; its stamp lets a rerun after a failure skip what was built.
step() {
  local name=$1 what=$2 start=$SECONDS
  if [[ -f $bin/.$name ]]; then echo "cluster-build: $what (built)"; return; fi
  echo "cluster-build: building $what"
  "$3"
  touch "$bin/.$name"
  echo "cluster-build: $what built in $((SECONDS - start)) s"
}

# providerless leaves out the in-tree cloud providers: nothing here talks to a cloud, and it builds faster.
build_kubernetes() {
  (cd "$here/k8s" && go build -trimpath -tags providerless -ldflags "$k8s_ldflags" -o "$bin/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy)
  mv "$bin/server" "$bin/etcd"  # `go build` names it after its package path, less the /v3
}

# Both modules have no `replace` directives, so `go install MODULE@VERSION` builds them with their own go.sum.
build_kuberay() {
  GOBIN=$bin go install -trimpath -ldflags "-s -w" "github.com/ray-project/kuberay/ray-operator@$kuberay_version"
  mv "$bin/ray-operator" "$bin/kuberay-operator"
}

build_kwok() {
  GOBIN=$bin go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
}

# CoreDNS's go.mod has no `replace` either; the real-pod node resolves Service names through it.
build_coredns() {
  GOBIN=$bin go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version"
}

# The sandbox ("pause") image's binary, from the same Kubernetes module: no image can be pulled here.
build_pause() {
  local src
  src=$(cd "$here/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  command -v cc >/dev/null || { echo "cluster-build: no C compiler (cc) for pause" >&2; exit 1; }
  cc -Os -static -Wall -Werror -DVERSION=v3.10-rayvllm -o "$bin/pause" "$src"
  strip "$bin/pause"
}

step kubernetes "etcd + kube-apiserver/controller-manager/scheduler + kubelet/kube-proxy $kubernetes_version" \
  build_kubernetes
step coredns "coredns $coredns_version" build_coredns
step pause "pause (static)" build_pause
step kuberay "kuberay-operator $kuberay_version" build_kuberay
step kwok "kwok $kwok_version" build_kwok
for module in "${crd_modules[@]}"; do
  echo "cluster-build: fetching $module (CRDs)"
  go mod download "$module"
done
touch "$stamp"
echo "cluster-build: done in $bin"
