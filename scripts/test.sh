#!/usr/bin/env bash
# The one test command of m365-emulator (CI runs it through .ci/run).
#
#   scripts/test.sh                  # the whole workspace
#   scripts/test.sh --test clients   # extra arguments go to `cargo test`
#
# 1. Keeps a Python venv in .venv with the pinned real client libraries
#    (tests/clients/requirements.txt); rebuilt when that file or the interpreter changes.
# 2. Points the client tests at it (M365EMU_TEST_PYTHON).
# 3. Installs Debian's headless Chromium and its chromedriver when either is missing (for the
#    browser test, emulator/tests/browser_and_msal_user_flows.rs) and points the tests at them
#    (M365EMU_CHROMIUM, M365EMU_CHROMEDRIVER). Selenium never downloads a driver or a browser.
# 4. Compiles the criterion benches (full runs only), then runs `cargo test --workspace --locked`
#    with insta never writing snapshots.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/clients/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { printf '[test.sh] %s\n' "$*" >&2; }

# What the venv was built from: the requirements and the interpreter that made it.
want_stamp="$(
	{
		sha256sum "$REQUIREMENTS" | cut -d' ' -f1
		"$PYTHON" -c 'import sys; print(sys.version)'
	} | sha256sum | cut -d' ' -f1
)"

venv_ok() {
	[[ -x "$VENV/bin/python" ]] &&
		[[ -f "$STAMP" ]] &&
		[[ "$(cat "$STAMP")" == "$want_stamp" ]] &&
		"$VENV/bin/python" -c 'import msal, jwt, azure.identity, azure.communication.identity, msgraph, selenium' >/dev/null 2>&1
}

if venv_ok; then
	log "python venv up to date ($VENV)"
else
	log "creating python venv in $VENV from tests/clients/requirements.txt"
	rm -rf "$VENV"
	"$PYTHON" -m venv "$VENV"
	# Bounded: a stuck index must not eat the CI budget.
	timeout 900 "$VENV/bin/python" -m pip install \
		--quiet --disable-pip-version-check --no-input \
		--timeout 60 --retries 3 \
		-r "$REQUIREMENTS"
	printf '%s\n' "$want_stamp" >"$STAMP"
	log "installed: $("$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -Ei '^(msal|azure-identity|azure-communication-identity|msgraph-sdk|pyjwt|cryptography|selenium)==' | tr '\n' ' ')"
fi

export M365EMU_TEST_PYTHON="$VENV/bin/python"

# Headless Chromium + chromedriver from Debian's packages (same major version, made for each
# other). Root on CI; elsewhere sudo if it works without a password prompt.
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
	log "chromium present ($CHROMIUM, $CHROMEDRIVER)"
else
	as_root=()
	if [[ "$(id -u)" != 0 ]]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			as_root=(sudo -n)
		else
			as_root=(unavailable)
		fi
	fi
	if [[ "${as_root[*]-}" == unavailable ]]; then
		log "WARNING: $CHROMIUM or $CHROMEDRIVER is missing and this is neither root nor passwordless sudo:"
		log "         install them with 'apt-get install chromium chromium-driver'; the browser test will fail"
	else
		log "installing chromium and chromium-driver (apt-get)"
		# Bounded: a stuck mirror must not eat the CI budget.
		timeout 300 ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
			apt-get update -q >&2
		timeout 900 ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends chromium chromium-driver >&2
		log "installed: $("$CHROMIUM" --version 2>/dev/null || echo '?'); $("$CHROMEDRIVER" --version 2>/dev/null || echo '?')"
	fi
fi
export M365EMU_CHROMIUM="$CHROMIUM"
export M365EMU_CHROMEDRIVER="$CHROMEDRIVER"
export CI=true
export INSTA_UPDATE=no

# The criterion benches are not built by `cargo test`; compile them (no run) on full runs so
# they never rot. They reuse the test build's dependencies: only the bench files compile.
if [[ $# -eq 0 ]]; then
	log "cargo test --workspace --locked --benches --no-run"
	cargo test --workspace --locked --benches --no-run
fi
log "cargo test --workspace --locked $*"
cargo test --workspace --locked "$@"

# Full runs also run the conformance suite the way users do, through its command line, and
# keep the JUnit reports in target/conformance/: the Rust reference client must pass every
# scenario, the Python one (MSAL + requests, on the pinned virtualenv) every scenario it
# supports; the naive client may fail only the scenarios of its expected-failures file.
if [[ $# -eq 0 ]]; then
	mkdir -p target/conformance
	log "m365-conformance: the Rust reference client"
	target/debug/m365-conformance run --client target/debug/m365-reference-client \
		--report junit=target/conformance/reference-client.xml \
		--report json=target/conformance/reference-client.json
	log "m365-conformance: the Python reference client"
	target/debug/m365-conformance run \
		--client "$VENV/bin/python conformance/clients/python/m365_reference_client.py" \
		--report junit=target/conformance/python-reference-client.xml \
		--report json=target/conformance/python-reference-client.json
	log "m365-conformance: the naive client, with its expected failures"
	target/debug/m365-conformance run \
		--client "$VENV/bin/python conformance/clients/naive/naive.py" \
		--expected-failures conformance/clients/naive/expected-failures.txt \
		--report junit=target/conformance/naive-client.xml >/dev/null
fi
