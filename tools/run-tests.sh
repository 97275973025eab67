#!/usr/bin/env bash
# Run the whole suite, as `make test` and CI do. pytest exits 5 when it collected nothing: that is a
# failure here, since every target is expected to have tests.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The slowest tests are listed, so a CI run shows where its time went.
.venv/bin/python -m pytest --durations=25 "$@"
rc=$?
if [[ $rc == 5 ]]; then echo "run-tests: pytest collected no tests" >&2; exit 1; fi
exit $rc
