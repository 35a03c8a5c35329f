#!/usr/bin/env bash
# The one test command of m365-emulator (CI runs it through .ci/run).
#
#   scripts/test.sh                  # the whole workspace
#   scripts/test.sh --test clients   # extra arguments go to `cargo test`
#
# 1. Keeps a Python venv in .venv with the pinned real client libraries
#    (tests/clients/requirements.txt); rebuilt when that file or the interpreter changes.
# 2. Points the client tests at it (M365EMU_TEST_PYTHON).
# 3. Runs `cargo test --workspace --locked` with insta never writing snapshots.
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
		"$VENV/bin/python" -c 'import msal, jwt, azure.identity' >/dev/null 2>&1
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
	log "installed: $("$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -Ei '^(msal|azure-identity|pyjwt|cryptography)==' | tr '\n' ' ')"
fi

export M365EMU_TEST_PYTHON="$VENV/bin/python"
export CI=true
export INSTA_UPDATE=no

log "cargo test --workspace --locked $*"
exec cargo test --workspace --locked "$@"
