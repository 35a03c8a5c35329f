#!/usr/bin/env bash
# The one benchmark command: the emulator next to the RSA-2048 signing limit of this machine
# (`openssl speed`, one core and all cores) and next to the peer most users reach for today
# (`oauth2-mock-server` from npm), all measured in this run, plus the scale figures.
#
#   benches/compare.sh            # about 5 minutes of measuring after the release build
#
# Environment knobs: BENCH_DURATION (per run, default 8s), BENCH_WARMUP (default 1s),
# BENCH_SCALE_ROUNDS and BENCH_SCALE_DURATION (the 10,000-app turns, default 3 x 4s),
# BENCH_OPENSSL_SECONDS (each openssl turn, default 3),
# BENCH_OUT (results directory, default target/bench-results/<UTC time>), BENCH_SKIP_BUILD=1
# (use the release binaries already in the target directory).
#
# What it does (every number in the table comes from this one run):
#  1. builds m365-emulator and m365-load in release mode;
#  2. installs oauth2-mock-server@9.3.0 with npm into target/bench-peer (ignored by git);
#  3. starts the emulator on a new state directory (cold start: key generation) and again on
#     the same one (warm start), timing each to its ready file, and reads its idle RSS; starts
#     oauth2-mock-server over HTTPS (its own self-signed certificate) and reads its idle RSS;
#  4. at 1, 8 and 64 connections, in turns: oauth2-mock-server token-secret, the emulator
#     token-secret and token-certificate, then `openssl speed rsa2048` on one core and with
#     `-multi <nproc>` (sign/s). Whoever is not measured is paused (SIGSTOP), so nothing else
#     runs. The openssl figures are the means of the three turns: on a shared VM the speed
#     drifts by 20-30 % within minutes, and a reference measured minutes away from what it is
#     compared with measures the drift. Then acs-hmac at 8;
#  5. the emulator with 10,000 more applications with certificates (registered before the
#     default ones, so a linear search would have to pass them all) and the default world,
#     side by side, taking turns: token-certificate at 8, three rounds each;
#  6. the emulator with a 1M-records-a-day Management feed: management-drain over 1 and 7 days;
#  7. `m365-load compare`: prints the table, writes results.json, table.md and chart.png to
#     the results directory and copies them to benches/results/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
DURATION="${BENCH_DURATION:-8s}"
SCALE_ROUNDS="${BENCH_SCALE_ROUNDS:-3}"
SCALE_DURATION="${BENCH_SCALE_DURATION:-4s}"
OPENSSL_SECONDS="${BENCH_OPENSSL_SECONDS:-3}"
WARMUP="${BENCH_WARMUP:-1s}"
PEER_VERSION="9.3.0"
CORES="$(nproc)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${BENCH_OUT:-$TARGET_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
REPORTS="$OUT/reports"
WORK="$(mktemp -d -t m365-bench-XXXXXX)"
mkdir -p "$REPORTS"

log() { printf '[compare.sh] %s\n' "$*" >&2; }
# Errors print as one message, not a backtrace.
export RUST_BACKTRACE=0

PIDS=()
cleanup() {
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
		# A paused process would not act on SIGTERM.
		kill -CONT "$pid" 2>/dev/null || true
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in cargo openssl node npm python3; do
	command -v "$tool" >/dev/null || { log "error: $tool not found"; exit 1; }
done

# 1. Build.
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
	log "building (release): m365-emulator, m365-load"
	cargo build --release --locked -q -p m365-emulator -p m365-benches --bin m365-emulator --bin m365-load
fi
EMU="$TARGET_DIR/release/m365-emulator"
LOAD="$TARGET_DIR/release/m365-load"

# The physical limit: RSA-2048 signatures per second (measured in turns, step 4).
openssl_sign() {
	openssl speed -seconds "$OPENSSL_SECONDS" -multi "$1" rsa2048 2>/dev/null |
		awk '/^rsa 2048 bits/ { v = $6 } END { print v }'
}
mean() { awk '{ for (i = 1; i <= NF; i++) s += $i } END { printf "%.1f", s / NF }' <<<"$*"; }

# 2. The peer, pinned, installed on the spot into an ignored directory.
PEER_DIR="$TARGET_DIR/bench-peer"
PEER_JS="$PEER_DIR/node_modules/oauth2-mock-server/dist/oauth2-mock-server.mjs"
if ! grep -qs "\"version\": \"$PEER_VERSION\"" "$PEER_DIR/node_modules/oauth2-mock-server/package.json"; then
	log "npm install oauth2-mock-server@$PEER_VERSION into $PEER_DIR"
	mkdir -p "$PEER_DIR"
	timeout 300 npm install --prefix "$PEER_DIR" --no-audit --no-fund --loglevel=error \
		"oauth2-mock-server@$PEER_VERSION" >&2
fi

now_ms() { date +%s%3N; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Starts the emulator (state dir $1, extra args after) in the background; sets EMU_PID and
# START_MS (time to the ready file).
start_emulator() {
	local state="$1"
	shift
	rm -f "$state/ready.json"
	local t0
	t0="$(now_ms)"
	"$EMU" serve --state-dir "$state" --https-port 0 --http-port 0 "$@" >"$WORK/emulator.log" 2>&1 &
	EMU_PID=$!
	PIDS+=("$EMU_PID")
	for _ in $(seq 1 6000); do
		[[ -s "$state/ready.json" ]] && break
		kill -0 "$EMU_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; log "error: the emulator exited"; exit 1; }
		sleep 0.005
	done
	[[ -s "$state/ready.json" ]] || { log "error: no ready file after 30 s"; exit 1; }
	START_MS=$(($(now_ms) - t0))
}

stop_emulator() {
	kill -TERM "$EMU_PID" 2>/dev/null || true
	wait "$EMU_PID" 2>/dev/null || true
}

run_load() { # label scenario connections [extra args...]
	local label="$1" scenario="$2" c="$3"
	shift 3
	"$LOAD" run --label "$label" --scenario "$scenario" -c "$c" -d "$DURATION" --warmup "$WARMUP" \
		--json "$REPORTS/$label-$scenario-c$c.json" "$@"
}

# 3. Start-up and idle RSS; the peer next to it.
STATE="$WORK/state"
start_emulator "$STATE"
COLD_MS="$START_MS"
stop_emulator
start_emulator "$STATE"
WARM_MS="$START_MS"
sleep 1
IDLE_RSS="$(rss_kib "$EMU_PID")"
log "start-up to ready file: cold $COLD_MS ms, warm $WARM_MS ms; idle RSS $IDLE_RSS KiB"

# A CA and a leaf for 127.0.0.1 (rustls refuses a CA certificate as the server's own).
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=m365-bench peer CA" -days 30 \
	-keyout "$WORK/peer-ca.key" -out "$WORK/peer-ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$WORK/peer.key" -out "$WORK/peer.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/peer.ext"
openssl x509 -req -in "$WORK/peer.csr" -CA "$WORK/peer-ca.pem" -CAkey "$WORK/peer-ca.key" -CAcreateserial \
	-days 30 -extfile "$WORK/peer.ext" -out "$WORK/peer.pem" 2>/dev/null
PEER_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
node "$PEER_JS" -a 127.0.0.1 -p "$PEER_PORT" -c "$WORK/peer.pem" -k "$WORK/peer.key" >"$WORK/peer.log" 2>&1 &
PEER_PID=$!
PIDS+=("$PEER_PID")
for _ in $(seq 1 300); do
	python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PEER_PORT), 0.2)" 2>/dev/null && break
	kill -0 "$PEER_PID" 2>/dev/null || { cat "$WORK/peer.log" >&2; log "error: oauth2-mock-server exited"; exit 1; }
	sleep 0.1
done
sleep 1
PEER_IDLE_RSS="$(rss_kib "$PEER_PID")"

# 4. In turns: the peer, the emulator, openssl; whoever is not measured is paused.
READY="$STATE/ready.json"
pause() { kill -STOP "$@"; }
resume() { kill -CONT "$@"; }
SINGLE_ROUNDS=()
MULTI_ROUNDS=()
for c in 1 8 64; do
	pause "$EMU_PID"
	run_load oauth2-mock-server token-secret "$c" --target "https://127.0.0.1:$PEER_PORT" \
		--ca "$WORK/peer-ca.pem" --token-path /token --client-id m365-load --client-secret unused \
		--pid "$PEER_PID"
	pause "$PEER_PID"
	resume "$EMU_PID"
	run_load emulator token-secret "$c" --ready-file "$READY"
	run_load emulator token-certificate "$c" --ready-file "$READY"
	pause "$EMU_PID"
	SINGLE_ROUNDS+=("$(openssl_sign 1)")
	MULTI_ROUNDS+=("$(openssl_sign "$CORES")")
	log "openssl sign/s in this turn: ${SINGLE_ROUNDS[-1]} on one core, ${MULTI_ROUNDS[-1]} with -multi $CORES"
	resume "$EMU_PID" "$PEER_PID"
done
OPENSSL_SINGLE="$(mean "${SINGLE_ROUNDS[@]}")"
OPENSSL_MULTI="$(mean "${MULTI_ROUNDS[@]}")"
log "openssl sign/s (mean of 3 turns): $OPENSSL_SINGLE on one core, $OPENSSL_MULTI with -multi $CORES"
kill -TERM "$PEER_PID" 2>/dev/null || true
wait "$PEER_PID" 2>/dev/null || true
ACS_NOTE=""
if ! acs_out="$(run_load emulator acs-hmac 8 --ready-file "$READY" 2>&1)"; then
	ACS_NOTE="$(grep -m1 -E 'first request failed|^Error' <<<"$acs_out" | cut -c1-200 | sed 's/"/'"'"'/g')"
	log "acs-hmac not measured: $ACS_NOTE"
else
	echo "$acs_out"
fi
stop_emulator

# 5. 10,000 more applications with certificates, listed before the default ones.
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=m365-bench shared app certificate" \
	-days 30 -keyout "$WORK/shared-app.key" -out "$WORK/shared-app.pem" 2>/dev/null
python3 - "$ROOT/fixtures/default-world.toml" "$WORK/shared-app.pem" "$WORK/world-10k.toml" <<'PY'
import sys, uuid
src, cert, out = sys.argv[1:]
text = open(src).read()
i = text.index("[[applications]]")
apps = []
for n in range(10_000):
    cid = uuid.uuid5(uuid.NAMESPACE_OID, f"m365-bench-app-{n}")
    apps.append(
        f'[[applications]]\nclient_id = "{cid}"\ndisplay_name = "Bench app {n}"\n'
        f'home_tenant = "contoso.onmicrosoft.com"\n\n'
        f'[[applications.certificates]]\nname = "shared"\ncertificate_pem_path = "{cert}"\n\n'
    )
open(out, "w").write(text[:i] + "".join(apps) + text[i:])
PY
# Both worlds run side by side and take turns, so a drift in the machine's speed (common on a
# shared VM) hits both alike; the ratio pools the rounds.
start_emulator "$WORK/state-10k" --config "$WORK/world-10k.toml"
log "10,000-app world: ready in $START_MS ms"
PID_10K="$EMU_PID"
start_emulator "$STATE"
PID_DEFAULT="$EMU_PID"
for round in $(seq 1 "$SCALE_ROUNDS"); do
	for pair in "emulator-default-world:$STATE" "emulator-10k-apps:$WORK/state-10k"; do
		label="${pair%%:*}"
		"$LOAD" run --label "$label" --scenario token-certificate -c 8 -d "$SCALE_DURATION" \
			--warmup "$WARMUP" --ready-file "${pair#*:}/ready.json" \
			--json "$REPORTS/$label-token-certificate-c8-r$round.json"
	done
done
EMU_PID="$PID_DEFAULT" stop_emulator
EMU_PID="$PID_10K" stop_emulator

# 6. Management feed at 1M records a day (a blob every 300 s with 3,472 records).
cp "$ROOT/fixtures/default-world.toml" "$WORK/world-1m.toml"
printf '\n[server.management]\nblob_interval_seconds = 300\nrecords_per_blob = 3472\n' >>"$WORK/world-1m.toml"
start_emulator "$WORK/state-1m" --config "$WORK/world-1m.toml"
for days in 1 7; do
	"$LOAD" run --label emulator-1m-per-day --scenario management-drain -c 4 --days "$days" \
		-d "$DURATION" --warmup "$WARMUP" --ready-file "$WORK/state-1m/ready.json" \
		--json "$REPORTS/emulator-1m-per-day-management-drain-d$days.json"
done
stop_emulator

# 7. The table, the JSON and the chart.
cat >"$OUT/facts.json" <<JSON
{
  "date_utc": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "machine": "$(uname -srm), $CORES vCPU, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)",
  "load_average_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
  "openssl": "$(openssl version)",
  "openssl_turns": "one core: ${SINGLE_ROUNDS[*]}; -multi $CORES: ${MULTI_ROUNDS[*]} (sign/s, $OPENSSL_SECONDS s each)",
  "peer": "oauth2-mock-server@$PEER_VERSION on node $(node --version)",
  "duration_per_run": "$DURATION",
  "cold_start_ms": $COLD_MS,
  "warm_start_ms": $WARM_MS,
  "idle_rss_kib": $IDLE_RSS,
  "peer_idle_rss_kib": $PEER_IDLE_RSS,
  "acs_hmac": "${ACS_NOTE:-measured}"
}
JSON
"$LOAD" compare --reports "$REPORTS" --openssl-single "$OPENSSL_SINGLE" --openssl-multi "$OPENSSL_MULTI" \
	--cores "$CORES" --facts "$OUT/facts.json" --out-json "$OUT/results.json" --out-png "$OUT/chart.png" \
	--out-table "$OUT/table.md"
mkdir -p "$ROOT/benches/results"
cp "$OUT/results.json" "$OUT/table.md" "$ROOT/benches/results/"
[[ -f "$OUT/chart.png" ]] && cp "$OUT/chart.png" "$ROOT/benches/results/"
log "results: $OUT (copied to benches/results/)"
