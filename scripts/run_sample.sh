#!/usr/bin/env bash
# Set-up, then the main job (daily_chain) on every partition of the bundled sample data.
# No credentials needed: with RLX_LAKE_URI unset the source is the sample lake built from the
# real captures in data/sample/captures/. Runs are recorded in the instance under data/dagster/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="$PWD"
unset RLX_LAKE_URI
rlx build-sample-lake
# Named pools keep their limits in the instance's storage (Dagster 1.13), not in dagster.yaml.
dagster instance concurrency set crypto_lake_download 4 >/dev/null
dagster instance concurrency set reconstruction 2 >/dev/null
log_dir="${RLX_DATA_DIR:-data}/logs/run_sample"
mkdir -p "${log_dir}"
for partition in \
    "2024-08-08|BINANCE.BTC-USDT" \
    "2024-08-09|BINANCE.BTC-USDT" \
    "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP"; do
  for job in golden_job daily_chain; do
    log="${log_dir}/${job}_${partition//[|]/_}.log"
    echo "== ${job} ${partition} (log: ${log})"
    if ! dagster job execute -m rlx_assets.definitions -j "${job}" \
        --tags "{\"dagster/partition\": \"${partition}\"}" >"${log}" 2>&1; then
      grep -E "STEP_FAILURE|RUN_FAILURE|Error|error" "${log}" | tail -20
      exit 1
    fi
    grep -E "RUN_SUCCESS" "${log}"
  done
done
echo "Done: data under ${RLX_DATA_DIR:-data}/, runs in the UI via: DAGSTER_HOME=\$PWD dagster dev"
