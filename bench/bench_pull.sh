#!/usr/bin/env bash
# bench_pull.sh [CORPUS_DIR] [WORK_DIR]
#
# HTTP pull benchmark: nginx on 127.0.0.1 serves an ostree-made archive repository of the
# corpus (v1, then v2 with parent v1; built once with `ostree commit` and cached in WORK_DIR).
# Each rep pulls v1 into a fresh `bare` repository, then v1 -> v2 (objects; the server has no
# static deltas), with `ostree pull` and with `bootree pull`, in the same run, alternating which
# tool goes first. Wall/CPU time from /usr/bin/time; requests and bytes from nginx's access log.
# Both clients are fsck'd by ostree at the end of every rep (not timed).
#
# Env: REPS (default 3), SETTLE (seconds of pause before each timed pull, default 5), BOOTREE (default: bootree on PATH, else `python -m bootree`),
#      FLEET=N also runs N bootree clients pulling v2 at once and checks they end identical
#      and fsck-clean (default 0), PHASES (default "pull"; "fleet" alone skips the timed pulls),
#      BEFORE (an older bootree's command: adds the tool "before", timed in the same reps).
# Output: WORK_DIR/results/runs.tsv (tool op rep wall user sys rss requests bytes) and a
# markdown summary on stdout. Must run as root (bare repos keep file ownership).
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/_pyc.sh
. "$(dirname "${BASH_SOURCE[0]}")/_pyc.sh"
# shellcheck source=bench/_order.sh
. "$(dirname "${BASH_SOURCE[0]}")/_order.sh"
CORPUS=$(cd "${1:-/work/bench-work/corpus}" && pwd)
mkdir -p "${2:-/work/bench-work/pull-bench}"
WORK=$(cd "${2:-/work/bench-work/pull-bench}" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPS=${REPS:-3}
FLEET=${FLEET:-0}
PHASES=" ${PHASES:-pull} "
if [ -z "${BOOTREE:-}" ]; then
    if [ -x "$HERE/../.venv/bin/bootree" ]; then BOOTREE="$HERE/../.venv/bin/bootree"
    elif command -v bootree >/dev/null; then BOOTREE=bootree
    else BOOTREE="env PYTHONPATH=$HERE/../src python3 -m bootree"; fi
precompile "$BOOTREE" "${BEFORE:-}"
fi
RES=$WORK/results
mkdir -p "$RES" "$WORK/logs"
RUNS=$RES/runs.tsv
printf 'tool\top\trep\twall_s\tuser_s\tsys_s\tmaxrss_kb\trequests\tbytes\n' > "$RUNS"

# --- server repository (cached) -------------------------------------------------------------
SRV=$WORK/srv
if ! ostree rev-parse --repo="$SRV" 'corpus^' >/dev/null 2>&1; then
    echo "== building the server repository with ostree (once, ~40 s)"
    rm -rf "$SRV"
    ostree init --repo="$SRV" --mode=archive
    ostree commit --repo="$SRV" --branch=corpus --subject=v1 --timestamp=@1700000000 --tree=dir="$CORPUS/v1" >/dev/null
    ostree commit --repo="$SRV" --branch=corpus --subject=v2 --timestamp=@1700604800 --tree=dir="$CORPUS/v2" >/dev/null
fi
ostree summary -u --repo="$SRV"
C1=$(ostree rev-parse --repo="$SRV" 'corpus^')
C2=$(ostree rev-parse --repo="$SRV" corpus)
echo "v1=$C1 v2=$C2"

# --- nginx on a free loopback port ----------------------------------------------------------
NGX=$WORK/nginx
rm -rf "$NGX"; mkdir -p "$NGX"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$NGX/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log;
events { worker_connections 4096; }
http {
  log_format cnt '\$status \$body_bytes_sent \$request_uri';
  access_log $NGX/access.log cnt;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000; keepalive_timeout 60;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT; root $SRV; }
}
EOF
nginx -p "$NGX" -c "$NGX/nginx.conf" &
NGX_PID=$!
trap 'kill $NGX_PID 2>/dev/null || true; wait $NGX_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/config" >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT
LOG=$NGX/access.log

# measure TOOL OP REP cmd...: time one command; count nginx requests/bytes it caused
measure() {
    local tool=$1 op=$2 rep=$3; shift 3
    local t="$WORK/logs/$tool.$op.$rep.time" out="$WORK/logs/$tool.$op.$rep.log" n0 n1
    sync
    n0=$(wc -l < "$LOG")
    if ! /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > "$out" 2>&1; then
        echo "FAILED: $tool $op (rep $rep): $*" >&2; tail -5 "$out" >&2; return 1
    fi
    sleep 0.3; n1=$(wc -l < "$LOG")
    read -r wall user sys rss < <(tail -1 "$t")
    local req bytes
    req=$((n1 - n0))
    bytes=$(sed -n "$((n0 + 1)),${n1}p" "$LOG" | awk '{s+=$2} END{print s+0}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$rep" "$wall" "$user" "$sys" "$rss" "$req" "$bytes" >> "$RUNS"
    printf '  %-8s %-8s rep %s: %6.2fs wall, %6.2fs cpu, %6d requests, %10d bytes\n' "$tool" "$op" "$rep" \
        "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u + s}')" "$req" "$bytes"
}

# Nothing is deleted until every timed pull has run: each pull gets a fresh client directory.
# ext4 without a journal (this VM's root) skips inodes freed in the last 60 s (360 s while their
# inode table block is not yet written back), when it allocates new ones; right after deleting a 13,000-file
# repository a pull spent up to 3x the kernel time creating files (perf: recently_deleted()
# under ext4_create), whichever tool it was. The pause lets the previous pull's writes settle.
settle() { sync; sleep "${SETTLE:-5}"; }
CLIENTS=$WORK/clients
rm -rf "$CLIENTS"; mkdir -p "$CLIENTS"
sync; sleep 65

client() {  # client TOOL DIR
    ostree init --repo="$2" --mode=bare
    ostree remote add --repo="$2" --no-gpg-verify origin "$URL"
    settle
}

run_ostree() {
    local rep=$1 c=$CLIENTS/ostree-$1
    client ostree "$c"
    measure ostree pull-v1 "$rep" ostree pull --repo="$c" origin "corpus@$C1"
    settle
    measure ostree v1-to-v2 "$rep" ostree pull --repo="$c" --disable-static-deltas origin corpus
    ostree fsck --repo="$c" > "$WORK/logs/ostree.fsck.$rep.log" 2>&1 || { echo "ostree client fsck failed" >&2; exit 1; }
}

run_bootree() {  # run_bootree REP [TOOL CMD]: TOOL "before" times the older bootree of BEFORE
    local rep=$1 tool=${2:-bootree} cmd=${3:-$BOOTREE}
    local c=$CLIENTS/$tool-$rep
    client "$tool" "$c"
    measure "$tool" pull-v1 "$rep" $cmd --repo="$c" pull origin "corpus@$C1"
    settle
    measure "$tool" v1-to-v2 "$rep" $cmd --repo="$c" pull origin corpus
    [ "$(ostree rev-parse --repo="$c" origin:corpus)" = "$C2" ] || { echo "$tool pulled the wrong commit" >&2; exit 1; }
    ostree fsck --repo="$c" > "$WORK/logs/$tool.fsck.$rep.log" 2>&1 || { echo "$tool client fsck failed" >&2; exit 1; }
}
run_before() { [ -z "${BEFORE:-}" ] || run_bootree "$1" before "$BEFORE"; }

case "$PHASES" in *" pull "*)
for rep in $(seq 1 "$REPS"); do
    echo "== rep $rep/$REPS"
    # each tool in each position once every len(tools) reps (bench/_order.sh says why)
    # shellcheck disable=SC2046
    for tool in $(rotated "$rep" ostree bootree ${BEFORE:+before}); do "run_$tool" "$rep"; done
done
rm -rf "$CLIENTS"
;; esac

# --- fleet: N bootree clients pulling v2 at once ---------------------------------------------
case "$PHASES" in *" fleet "*) [ "$FLEET" -gt 0 ] || FLEET=20 ;; esac
if [ "$FLEET" -gt 0 ]; then
    echo "== fleet: $FLEET bootree clients pull v2 at once (archive repos)"
    F=$WORK/fleet; rm -rf "$F"; mkdir -p "$F"
    for i in $(seq 1 "$FLEET"); do
        ostree init --repo="$F/c$i" --mode=archive
        ostree remote add --repo="$F/c$i" --no-gpg-verify origin "$URL"
    done
    start=$(date +%s.%N)
    pids=()
    for i in $(seq 1 "$FLEET"); do $BOOTREE --repo="$F/c$i" pull origin corpus > "$F/c$i.log" 2>&1 & pids+=($!); done
    fail=0; for p in "${pids[@]}"; do wait "$p" || fail=1; done
    end=$(date +%s.%N)
    [ $fail -eq 0 ] || { echo "a fleet client failed" >&2; exit 1; }
    sums=$(for i in $(seq 1 "$FLEET"); do (cd "$F/c$i" && find objects refs -type f | sort | xargs sha256sum | sha256sum); done | sort -u | wc -l)
    bad=0; for i in $(seq 1 "$FLEET"); do ostree fsck --repo="$F/c$i" >/dev/null 2>&1 || bad=$((bad + 1)); done
    printf 'fleet: %d clients in %.1f s, %d distinct repository contents, %d fsck failures\n' \
        "$FLEET" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b - a}')" "$sums" "$bad" | tee "$RES/fleet.txt"
    rm -rf "$F"
    [ "$sums" -eq 1 ] && [ "$bad" -eq 0 ] || exit 1
fi

# --- summary ----------------------------------------------------------------------------------
python3 - "$RUNS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
if not rows:
    sys.exit(0)
print("\n| op | tool | wall s median (min-max) | CPU s | requests | MB received | peak RSS MB |")
print("|---|---|---:|---:|---:|---:|---:|")
for op in ("pull-v1", "v1-to-v2"):
    for tool in ("ostree", "bootree", "before"):
        rs = [r for r in rows if r["op"] == op and r["tool"] == tool]
        if not rs:
            continue
        w = sorted(float(r["wall_s"]) for r in rs)
        cpu = statistics.median(float(r["user_s"]) + float(r["sys_s"]) for r in rs)
        print(f"| {op} | {tool} | {statistics.median(w):.2f} ({w[0]:.2f}-{w[-1]:.2f}) | {cpu:.2f} "
              f"| {statistics.median(int(r['requests']) for r in rs):.0f} "
              f"| {statistics.median(int(r['bytes']) for r in rs) / 1e6:.1f} "
              f"| {statistics.median(int(r['maxrss_kb']) for r in rs) / 1024:.0f} |")
PY
