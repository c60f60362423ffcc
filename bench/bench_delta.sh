#!/usr/bin/env bash
# bench_delta.sh CORPUS WORK [RESULTS]
#
# Static deltas v1 -> v2 of the corpus, same run: `ostree static-delta generate`, bootree's
# compatible delta (--format=ostree) and bootree's own (--format=bootree). For each: size
# (parts + fallbacks, deterministic), generation wall time, CPU seconds (user + system) and peak
# RSS (wall time is noise on a shared machine; CPU and RSS compare), and `static-delta
# apply-offline` of a self-contained (--inline --min-fallback-size=0) delta file onto a
# bare-user repo holding v1, which is then fsck'd.
#
#   CORPUS   corpus directory with v1/ and v2/ (shared/bench/make-corpus.sh; SKIP_CORPUS=1 to
#            use it as it is)
#   WORK     scratch directory OUTSIDE the repository (~1.5 GB, and 0.4 GB per apply while it runs)
#   RESULTS  where runs.tsv and summary.md go (default WORK/results)
#
# Both tools read the same archive repository, committed once by ostree with BASELINE.md's
# timestamps (so its objects and fallback sizes are ostree's). Env: REPS (default 3), OSTREE
# (default ostree), BOOTREE (default bootree, may hold arguments, e.g. "python3 -m bootree"),
# FORMATS (default "ostree bootree-compat bootree").
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/_pyc.sh
. "$(dirname "${BASH_SOURCE[0]}")/_pyc.sh"
usage="usage: bench_delta.sh CORPUS WORK [RESULTS]"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=$(realpath -m "${1:?$usage}")
WORK=$(realpath -m "${2:?$usage}")
RESULTS=$(realpath -m "${3:-$WORK/results}")
REPS=${REPS:-3}
OSTREE=${OSTREE:-ostree}
BOOTREE=${BOOTREE:-bootree}
FORMATS=${FORMATS:-ostree bootree-compat bootree}
precompile "$BOOTREE"

die() { echo "error: $*" >&2; exit 1; }
case "$WORK/" in "$ROOT/"*) die "WORK must be outside the repository ($ROOT)" ;; esac
if [ -z "${SKIP_CORPUS:-}" ]; then
    MAKE_CORPUS=${MAKE_CORPUS:-$ROOT/../shared/bench/make-corpus.sh}
    [ -f "$MAKE_CORPUS" ] && bash "$MAKE_CORPUS" "$CORPUS" >/dev/null
fi
[ -d "$CORPUS/v1/usr" ] && [ -d "$CORPUS/v2/usr" ] || die "$CORPUS has no v1/ and v2/ trees"
command -v /usr/bin/time >/dev/null || die "needs /usr/bin/time (Debian package: time)"
mkdir -p "$WORK" "$RESULTS"
RUNS=$RESULTS/runs.tsv
printf 'format\trep\tstep\tseconds\tmax_rss_kb\tbytes\tcpu_seconds\n' > "$RUNS"

SRC=$WORK/archive
if [ ! -f "$SRC/refs/heads/corpus" ]; then
    echo "== committing v1 and v2 into an archive repo (once, by ostree)"
    rm -rf "$SRC"
    $OSTREE --repo="$SRC" init --mode=archive
    $OSTREE --repo="$SRC" commit -b corpus --tree=dir="$CORPUS/v1" --timestamp=@1700000000 --subject=v1 >/dev/null
    $OSTREE --repo="$SRC" commit -b corpus --tree=dir="$CORPUS/v2" --timestamp=@1700604800 --subject=v2 >/dev/null
fi
C1=$($OSTREE --repo="$SRC" rev-parse corpus^)
C2=$($OSTREE --repo="$SRC" rev-parse corpus)
echo "v1 $C1"; echo "v2 $C2"
BASE=$WORK/base-v1   # bare-user repo holding v1: copied for each apply
if [ ! -f "$BASE/refs/heads/v1" ]; then
    rm -rf "$BASE"
    $OSTREE --repo="$BASE" init --mode=bare-user
    $OSTREE --repo="$BASE" pull-local "$SRC" "$C1" >/dev/null
    $OSTREE --repo="$BASE" refs --create=v1 "$C1"
fi

# Each apply gets its own copy of BASE, all removed only when the script ends. On a file system
# without a journal (this machine's ext4), creating a file skips, one buffer lookup each, every
# free inode of its block group deleted in the last 60 s (360 s while the inode table is not
# written back): an apply right after `rm -rf` of the previous copy (15,000 files) paid ~0.5-1 ms
# of system time per object it created, ~1 CPU s of the bootree format's apply.
CLIENTS=$WORK/clients
rm -rf "$WORK/client" "$CLIENTS"
mkdir -p "$CLIENTS"
trap 'rm -rf "$CLIENTS"' EXIT

timed() {  # timed FORMAT REP STEP CMD...: wall seconds, CPU seconds and peak RSS of CMD
    local fmt=$1 rep=$2 step=$3 log=$WORK/time.log user sys cpu; shift 3
    sync
    /usr/bin/time -f '%e %M %U %S' -o "$log" "$@" >/dev/null
    read -r secs rss user sys < "$log"
    cpu=$(echo "$user + $sys" | bc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fmt" "$rep" "$step" "$secs" "$rss" "${BYTES:-}" "$cpu" >> "$RUNS"
    printf '  %-15s %-9s %7.2f s  %6.2f CPU s  %5d MB RSS  %s\n' "$fmt" "$step" "$secs" "$cpu" "$((rss / 1024))" "${BYTES:+$BYTES bytes}"
}

dir_of() {  # the delta directory of FORMAT
    local b64from b64to
    b64from=$(python3 -c "import base64,sys;print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode().rstrip('=').replace('/','_'))" "$C1")
    b64to=$(python3 -c "import base64,sys;print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode().rstrip('=').replace('/','_'))" "$C2")
    case $1 in bootree) top=bootree-deltas ;; *) top=deltas ;; esac
    echo "$SRC/$top/${b64from:0:2}/${b64from:2}-$b64to"
}

delta_size() {  # parts + fallback objects, as a client downloads them
    local d=$1 parts fb
    parts=$(find "$d" -type f ! -name superblock -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    case $fmt in bootree) f=bootree ;; *) f=ostree ;; esac
    fb=$($BOOTREE --repo="$SRC" static-delta show --format=$f --json "$C1-$C2" 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(f["size"] for f in json.load(sys.stdin)["fallbacks"]))' || echo 0)
    echo "$parts $fb"
}

for rep in $(seq 1 "$REPS"); do
    echo "== rep $rep/$REPS"
    for fmt in $FORMATS; do
        rm -rf "$SRC/deltas" "$SRC/bootree-deltas"
        case $fmt in
            ostree) gen=($OSTREE --repo="$SRC" static-delta generate --from="$C1" --to="$C2") ;;
            bootree-compat) gen=($BOOTREE --repo="$SRC" static-delta generate --from="$C1" --to="$C2") ;;
            bootree) gen=($BOOTREE --repo="$SRC" static-delta generate --format=bootree --from="$C1" --to="$C2") ;;
            *) die "unknown format $fmt" ;;
        esac
        BYTES='' timed "$fmt" "$rep" generate "${gen[@]}"
        d=$(dir_of "$fmt")
        read -r parts fb < <(delta_size "$d")
        printf '%s\t%s\tsize-parts\t\t\t%s\t\n%s\t%s\tsize-fallbacks\t\t\t%s\t\n' "$fmt" "$rep" "$parts" "$fmt" "$rep" "$fb" >> "$RUNS"
        printf '  %-15s size      parts %.1f MB + fallbacks %.1f MB = %.1f MB\n' "$fmt" \
            "$(echo "$parts / 1000000" | bc -l)" "$(echo "$fb / 1000000" | bc -l)" "$(echo "($parts + $fb) / 1000000" | bc -l)"
        # self-contained delta for apply-offline (no fallbacks: everything in the parts)
        rm -rf "$WORK/offline"; mkdir -p "$WORK/offline"
        off=("${gen[@]}" --inline --min-fallback-size=0 --filename="$WORK/offline/superblock")
        "${off[@]}" >/dev/null
        client=$CLIENTS/$fmt-$rep
        cp -a "$BASE" "$client"
        case $fmt in ostree) app=$OSTREE ;; *) app=$BOOTREE ;; esac
        BYTES=$(du -sb "$WORK/offline" | cut -f1) timed "$fmt" "$rep" apply $app --repo="$client" static-delta apply-offline "$WORK/offline/superblock"
        $OSTREE --repo="$client" fsck >/dev/null || die "$fmt: fsck failed after apply-offline"
        $OSTREE --repo="$client" show "$C2" >/dev/null || die "$fmt: v2 missing after apply-offline"
    done
done

python3 - "$RUNS" > "$RESULTS/summary.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
fmts = list(dict.fromkeys(r["format"] for r in rows))
def cell(vals, f):
    return f"{f(statistics.median(vals))} ({f(min(vals))}–{f(max(vals))})" if vals else ""
def col(fmt, step, key, conv):
    return [conv(r[key]) for r in rows if r["format"] == fmt and r["step"] == step and r[key]]
print("| v1 → v2 | " + " | ".join(fmts) + " |")
print("|---|" + "---:|" * len(fmts))
for label, step in (("parts MB", "size-parts"), ("fallbacks MB", "size-fallbacks")):
    print(f"| {label} | " + " | ".join(f"{statistics.median(col(f, step, 'bytes', int)) / 1e6:.1f}" for f in fmts) + " |")
tot = [statistics.median(col(f, "size-parts", "bytes", int)) + statistics.median(col(f, "size-fallbacks", "bytes", int)) for f in fmts]
print("| **total MB (deterministic)** | " + " | ".join(f"**{t / 1e6:.1f}**" for t in tot) + " |")
print("| generate wall s (noisy) | " + " | ".join(cell(col(f, "generate", "seconds", float), lambda x: f"{x:.1f}") for f in fmts) + " |")
print("| generate CPU s | " + " | ".join(cell(col(f, "generate", "cpu_seconds", float), lambda x: f"{x:.1f}") for f in fmts) + " |")
print("| generate peak RSS MB | " + " | ".join(cell(col(f, "generate", "max_rss_kb", int), lambda x: f"{x / 1024:.0f}") for f in fmts) + " |")
print("| self-contained file MB | " + " | ".join(f"{statistics.median(col(f, 'apply', 'bytes', int)) / 1e6:.1f}" for f in fmts) + " |")
print("| apply-offline wall s (noisy) | " + " | ".join(cell(col(f, "apply", "seconds", float), lambda x: f"{x:.2f}") for f in fmts) + " |")
print("| apply-offline CPU s | " + " | ".join(cell(col(f, "apply", "cpu_seconds", float), lambda x: f"{x:.2f}") for f in fmts) + " |")
print("| apply-offline peak RSS MB | " + " | ".join(cell(col(f, "apply", "max_rss_kb", int), lambda x: f"{x / 1024:.0f}") for f in fmts) + " |")
EOF
echo; cat "$RESULTS/summary.md"
