#!/usr/bin/env bash
# Installs the project (editable) and its pinned dependencies into the project's own virtual
# environment .venv; the system interpreter's packages are never touched. uv (pinned, from PyPI,
# put in .venv/.uv) does the install: on this 2-core machine it took 77 s from cold caches where
# pip took 476 s. A second run is a no-op in well under a second: the stamp .venv/.rlx-installed
# holds the hash of pyproject.toml and the uv pin, so only a changed pyproject reinstalls.
# The other scripts call this first and then put .venv/bin first on PATH.
# Bytecode is written here for what the project's processes import: where
# PYTHONDONTWRITEBYTECODE is set (as on this machine and in many containers) Python never writes
# .pyc files, and every process (each dagster command, daemon, run worker and step) would compile
# its imports again: importing the definitions took 4.0-4.5 s of CPU that way, 1.7 s from
# bytecode. Importing the entry points once with writing allowed compiles exactly those modules
# (7 s on two cores); compiling every installed package (uv --compile-bytecode) took 22 s. From
# warm download caches the whole set-up takes 12 s (30 s before).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
UV_PIN="uv==0.13.8"
BASE_PYTHON="${RLX_BASE_PYTHON:-python3}"  # the interpreter .venv is made from (3.11 or 3.12)
stamp="${VENV}/.rlx-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) ${UV_PIN} entry-point bytecode"

# The project's own modules change between runs: (re)compile what changed, in well under a second.
compile_project() {
  "${VENV}/bin/python" -m compileall -q rlx_assets rlx_assets_tests >/dev/null ||
    echo "setup: could not compile the project's modules to bytecode (imports will be slower)" >&2
}

# The installed packages' modules that the definitions, the CLIs (rlx, dg, dagster), the
# webserver and the daemon import, compiled by importing them, on both cores (the test and
# sample scripts let Python cache the rest as it goes).
compile_entry_points() {
  local python=("env" "-u" "PYTHONDONTWRITEBYTECODE" "${VENV}/bin/python" "-c")
  "${python[@]}" "import rlx_assets.definitions, rlx_assets.cli, dagster_dg_cli.cli" \
    >>"${log}" 2>&1 &
  local definitions=$!
  "${python[@]}" "import dagster._cli, dagster_webserver.cli, dagster._daemon.cli" \
    >>"${log}" 2>&1 || fail "importing Dagster's command line, webserver and daemon"
  wait "${definitions}" || fail "importing the definitions"
}

# uv is a single binary: the base interpreter's pip puts it in .venv/.uv (nothing else of the
# base interpreter changes); where that has no pip, .venv gets one first. A venv made with pip
# took 4 s more.
install_uv() {
  if "${BASE_PYTHON}" -m pip --version >/dev/null 2>&1; then
    "${BASE_PYTHON}" -m pip install --disable-pip-version-check -q --upgrade \
      --target "${VENV}/.uv" "${UV_PIN}"
  else
    "${VENV}/bin/python" -m ensurepip &&
      "${VENV}/bin/python" -m pip install --disable-pip-version-check -q --upgrade \
        --target "${VENV}/.uv" "${UV_PIN}"
  fi && ln -sf ../.uv/bin/uv "${VENV}/bin/uv"
}

if [[ -x "${VENV}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
  compile_project
  exit 0  # up to date
fi

log="${VENV}/setup.log"
fail() {
  echo "setup: $1 failed; the last lines of ${log}:" >&2
  tail -n 30 "${log}" >&2
  exit 1
}

if [[ ! -x "${VENV}/bin/python" ]]; then
  echo "setup: creating ${VENV} from $(command -v "${BASE_PYTHON}") ($("${BASE_PYTHON}" --version))"
  "${BASE_PYTHON}" -m venv --without-pip "${VENV}"
fi
: >"${log}"
if [[ "$("${VENV}/bin/uv" --version 2>/dev/null)" != "uv ${UV_PIN#uv==}" ]]; then
  echo "setup: installing ${UV_PIN} into ${VENV}"
  install_uv >>"${log}" 2>&1 || fail "installing ${UV_PIN}"
fi
echo "setup: installing the project and its pinned dependencies into ${VENV} (about a minute" \
  "the first time)"
VIRTUAL_ENV="${PWD}/${VENV}" "${VENV}/bin/uv" pip install --python "${VENV}/bin/python" \
  --quiet -e '.[dev]' >>"${log}" 2>&1 || fail "uv pip install -e '.[dev]'"
compile_entry_points
compile_project
echo "${wanted}" >"${stamp}"
echo "setup: ready (${VENV}; commands in ${VENV}/bin, e.g. source ${VENV}/bin/activate)"
