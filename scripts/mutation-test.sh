#!/usr/bin/env bash
#
# Mutation testing of the pure core: neuros/kpi.py, neuros/recommend.py and the
# ingest engine's aggregate maths in neuros/store.py, against their fast unit tests.
# Runs mutmut in a scratch copy of the repository (nothing is written here), prints
# the score and every surviving mutant, and fails below --min-score.
# docs/mutation-testing.md explains the survivors that are equivalent mutants.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

# Mutants: mutmut names them <module>.x_<function>__mutmut_<n> (methods:
# <module>.xǁ<Class>ǁ<method>__mutmut_<n>).
readonly -a MUTANTS=(
  'neuros.kpi.*'
  'neuros.recommend.*'
  'neuros.store.x_plan_upsert__mutmut_*'
  'neuros.store.x_advance_head__mutmut_*'
  'neuros.store.x_inputs_from_days__mutmut_*'
  'neuros.store.x_band_moves__mutmut_*'
  'neuros.store.x_window_bounds__mutmut_*'
  'neuros.store.x_replaces_stored__mutmut_*'
  'neuros.store.x__to_us__mutmut_*'
  'neuros.store.x__from_us__mutmut_*'
  'neuros.store.x__quanta_or_none__mutmut_*'
)
# The tests that may kill them: pure and fast (no database, no server).
readonly -a TESTS=(
  tests/agent/test_kpi.py
  tests/agent/test_recommend.py
  tests/agent/test_store_aggregate.py
)

usage() {
  cat <<EOF
Usage: $(basename "$0") [--min-score PCT] [--jobs N] [--keep]

Mutation-tests neuros/kpi.py, neuros/recommend.py and the aggregate functions of
neuros/store.py (plan_upsert, advance_head, inputs_from_days, band_moves,
window_bounds, replaces_stored, the instant and quanta conversions) with mutmut,
killing mutants with ${TESTS[*]}.

  --min-score PCT  fail (exit 1) when fewer than PCT % of the mutants are killed
                   (default 95)
  --jobs N         mutants tested in parallel (default 2: this is a 2-core machine)
  --keep           keep the scratch copy; inspect a mutant there with
                   'mutmut show NAME' (the copy's path is printed)
  -h, --help       this help

Needs mutmut in ${REPO_ROOT}/.venv (the dev extra: scripts/test.sh installs it from uv.lock). Takes a few minutes.
Exit status: 0 score reached, 1 below it, 2 usage or set-up error.
EOF
}

err() {
  echo "mutation-test: ERROR: $*" >&2
}

main() {
  local min_score=95 jobs=2 keep=false
  while (($#)); do
    case "$1" in
      --min-score)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { err "--min-score needs a number"; exit 2; }
        min_score="$2"
        shift 2
        ;;
      --jobs)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { err "--jobs needs a positive integer"; exit 2; }
        jobs="$2"
        shift 2
        ;;
      --keep) keep=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
  done

  local venv="${REPO_ROOT}/.venv/bin"
  if [[ ! -x "${venv}/mutmut" ]]; then
    err "no ${venv}/mutmut: run scripts/test.sh (it installs the dev extra from uv.lock)"
    exit 2
  fi

  local work
  work="$(mktemp -d -t neuros-mutation.XXXXXX)"
  if [[ "${keep}" == false ]]; then
    # shellcheck disable=SC2064 # expand now: work is local
    trap "rm -rf '${work}'" EXIT
  fi
  cp -R "${REPO_ROOT}/neuros" "${REPO_ROOT}/tests" "${REPO_ROOT}/pyproject.toml" "${work}/"
  find "${work}" -name __pycache__ -prune -exec rm -rf {} +
  # mutmut reads setup.cfg when pyproject.toml has no [tool.mutmut].
  {
    echo "[mutmut]"
    echo "source_paths = neuros"
    echo "only_mutate ="
    echo "    neuros/kpi.py"
    echo "    neuros/recommend.py"
    echo "    neuros/store.py"
    echo "pytest_add_cli_args_test_selection ="
    printf '    %s\n' "${TESTS[@]}"
    echo "pytest_add_cli_args ="
    printf '    %s\n' -p no:cacheprovider -q
  } >"${work}/setup.cfg"

  echo "mutation-test: mutating in ${work} (${jobs} at a time)" >&2
  (
    cd "${work}"
    # Progress redraws one line many times a second: keep only the log's end.
    nice "${venv}/mutmut" run --max-children "${jobs}" "${MUTANTS[@]}" >"${work}/run.log" 2>&1
  ) || { tail -n 40 "${work}/run.log" >&2; err "mutmut run failed"; exit 2; }

  (cd "${work}" && "${venv}/mutmut" results --all true) >"${work}/results.txt"
  local status=0
  "${venv}/python" - "${work}/results.txt" "${min_score}" "${MUTANTS[@]}" <<'EOF' || status=$?
import fnmatch
import sys
from collections import Counter

results, min_score, patterns = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
status = {}
for line in open(results, encoding="utf-8"):
    name, _, state = line.strip().partition(": ")
    if any(fnmatch.fnmatch(name, p) for p in patterns):
        status[name] = state
counts = Counter(status.values())
killed = counts["killed"] + counts["timeout"]
total = len(status)
score = 100 * killed / total if total else 0.0
for name, state in sorted(status.items()):
    if state not in ("killed", "timeout"):
        print(f"  {state:>10}  {name}")
print(f"mutation-test: {killed}/{total} mutants killed ({score:.1f} %); "
      + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
sys.exit(0 if total and score >= min_score else 1)
EOF
  if [[ "${keep}" == true ]]; then
    echo "mutation-test: kept ${work} (cd there; ${venv}/mutmut show NAME)" >&2
  fi
  return "${status}"
}

main "$@"
