#!/usr/bin/env bash
# Set-up, then the main job (daily_chain) on every partition of the bundled sample data.
# No credentials needed: with RLX_LAKE_URI unset the source is the sample lake built from the
# real captures in data/sample/captures/. Runs are recorded in the instance under data/dagster/.
# Prints one line per finished step (step, partition, duration); each run's full log is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VIRTUAL_ENV="${PWD}/.venv"
export PATH="${VIRTUAL_ENV}/bin:${PATH}"
unset PYTHONDONTWRITEBYTECODE  # Python caches the bytecode of what it imports (setup.sh)
export DAGSTER_HOME="${PWD}"
export PYTHONUNBUFFERED=1  # every step's event line reaches the log as it happens, none is lost
unset RLX_LAKE_URI
rlx build-sample-lake
# Named pools keep their limits in the instance's storage (Dagster 1.13), not in dagster.yaml.
dagster instance concurrency set crypto_lake_download 4 >/dev/null
dagster instance concurrency set validation 4 >/dev/null
dagster instance concurrency set reconstruction 2 >/dev/null
dagster instance concurrency set golden 4 >/dev/null
dagster instance concurrency set fidelity 4 >/dev/null
log_dir="${RLX_DATA_DIR:-data}/logs/run_sample"
mkdir -p "${log_dir}"

# One line per step of the run writing $1 (process $2) as it finishes, while the run goes on.
follow_steps() {
  local partition="$3"
  tail -n +1 -F --pid="$2" "$1" 2>/dev/null |
    sed -nu -E \
      -e 's/.* - ([A-Za-z0-9_]+) - STEP_SUCCESS - Finished execution of step "[^"]*" in (.+)\.$/\1 \2 ok/p' \
      -e 's/.* - ([A-Za-z0-9_]+) - STEP_FAILURE - .*/\1 - FAILED/p' |
    while read -r step took verdict; do
      printf '   %-42s %-40s %8s  %s\n' "${step}" "${partition}" "${took}" "${verdict}"
    done
}

# Each run in one process: the default executor forks a process per step from a server that
# imported the definitions once, which still costs a second or two per step, more than most of
# the sample's steps take (one partition's daily_chain, loaded 2-core machine: 45-46 s with a
# process per step, 18-26 s in one process; 394 s when each step started a fresh Python).
# Runs from the UI or the daemon keep a process per step.
IN_PROCESS='{"execution": {"config": {"in_process": {}}}}'

# A failed blocking gate skips the fidelity report within daily_chain, yet the report is the
# diagnosis of that day: with no daemon here (no fidelity_diagnosis_sensor) run it alone.
diagnose_failed_day() {
  local job="$1" partition="$2" chain_log="$3"
  [[ "${job}" == daily_chain ]] || return 0
  grep -q -- "- fidelity_report - ASSET_MATERIALIZATION" "${chain_log}" && return 0
  local log="${log_dir}/fidelity_job_${partition//[|]/_}.log"
  echo "== fidelity_job ${partition}: the diagnosis of the failed day (log: ${log})"
  if dg launch --job fidelity_job --partition "${partition}" -m rlx_assets.definitions \
      --config-json "${IN_PROCESS}" >"${log}" 2>&1 && grep -q "RUN_SUCCESS" "${log}"; then
    echo "   report: ${RLX_DATA_DIR:-data}/reports/${partition#*|}/${partition%%|*}/fidelity.md"
  else
    echo "   fidelity_job failed too (nothing to diagnose from?): see ${log}"
  fi
}
started=${SECONDS}
for partition in \
    "2024-08-08|BINANCE.BTC-USDT" \
    "2024-08-09|BINANCE.BTC-USDT" \
    "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP"; do
  for job in golden_job daily_chain; do
    log="${log_dir}/${job}_${partition//[|]/_}.log"
    echo "== ${job} ${partition} (log: ${log})"
    run_started=${SECONDS}
    : >"${log}"
    dg launch --job "${job}" --partition "${partition}" -m rlx_assets.definitions \
      --config-json "${IN_PROCESS}" >"${log}" 2>&1 &
    run=$!
    follow_steps "${log}" "${run}" "${partition}"
    if ! wait "${run}"; then
      grep -E "STEP_FAILURE|RUN_FAILURE|Error|error" "${log}" | tail -20
      diagnose_failed_day "${job}" "${partition}" "${log}"
      exit 1
    fi
    grep -q "RUN_SUCCESS" "${log}" || {
      tail -20 "${log}"
      diagnose_failed_day "${job}" "${partition}" "${log}"
      exit 1
    }
    echo "   ${job} succeeded in $((SECONDS - run_started)) s"
  done
done
echo "Done in $((SECONDS - started)) s: data under ${RLX_DATA_DIR:-data}/; browse the runs with:" \
  "source .venv/bin/activate && DAGSTER_HOME=\$PWD dg dev -m rlx_assets.definitions"
