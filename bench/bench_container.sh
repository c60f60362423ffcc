#!/usr/bin/env bash
# bench_container.sh CORPUS WORK
#
# Container-native updates on the corpus (issue 11, item 4), one run:
#   1. corpus v1 and v2 committed into an archive repository (`bootree commit`, cached in WORK);
#   2. each encapsulated by bootree (`container encapsulate --max-layers=$MAX_LAYERS`, owners
#      from dpkg file lists built from the corpus's own .debs: the corpus tree has no dpkg
#      database) and pushed to a loopback docker-registry this script starts (own config,
#      127.0.0.1, a free port, stopped on exit);
#   3. per rep, on a fresh directory sysroot: `bootree switch` to v1, then the tag moves to v2
#      and `bootree upgrade`: wall/CPU time and peak RSS from /usr/bin/time, bytes the registry
#      sent counted in its own access log;
#   4. the work a user would script instead, for v1: `skopeo copy docker://…:v1 oci:DIR`, the
#      layers extracted with tar (in order, owners and xattrs kept, the ostree object store
#      dropped), and `ostree commit` of the tree into a fresh bare repository.
# Targets (issue 11): upgrade bytes below 68.6 MB (ostree's object pull of the same update),
# switch faster than skopeo + extract + ostree commit, peak RSS below 150 MB.
#
#   CORPUS  corpus directory with v1/ v2/ (shared/bench/make-corpus.sh), .cache/debs and
#           versions.lock for the package lists (without them: the directory-based split)
#   WORK    scratch directory OUTSIDE the repository (~3 GB)
# Env: REPS (default 3), MAX_LAYERS (default 32), COMPRESSION (gzip, zstd, zstd:chunked: partial
#      fetches of the changed files on upgrade; default gzip), BOOTREE (default: the checkout's .venv, else
#      bootree on PATH), DELTA=1 (v2 is also published with `--delta-from=…:v1`, bootree's delta
#      format, as an OCI artifact: the upgrade then fetches that delta instead of the changed layers).
#      Output: WORK/results/runs.tsv and WORK/results/summary.md (also printed).
# Must run as root (bare-user deployments and `tar --same-owner`); needs docker-registry,
# skopeo, ostree and /usr/bin/time.
set -euo pipefail
export LC_ALL=C
usage="usage: bench_container.sh CORPUS WORK"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=$(realpath -m "${1:?$usage}")
WORK=$(realpath -m "${2:?$usage}")
REPS=${REPS:-3}
MAX_LAYERS=${MAX_LAYERS:-32}
COMPRESSION=${COMPRESSION:-gzip}
DELTA=${DELTA:-0}
die() { echo "error: $*" >&2; exit 1; }
case "$WORK/" in "$ROOT/"*) die "WORK must be outside the repository ($ROOT)" ;; esac
[ -d "$CORPUS/v1/usr" ] && [ -d "$CORPUS/v2/usr" ] || die "$CORPUS has no v1/ and v2/ trees"
for t in docker-registry skopeo ostree /usr/bin/time python3; do command -v "$t" >/dev/null || die "needs $t"; done
[ "$(id -u)" -eq 0 ] || die "must run as root"
if [ -z "${BOOTREE:-}" ]; then
    if [ -x "$ROOT/.venv/bin/bootree" ]; then BOOTREE="$ROOT/.venv/bin/bootree"
    elif command -v bootree >/dev/null; then BOOTREE=bootree
    else BOOTREE="env PYTHONPATH=$ROOT/src python3 -m bootree"; fi
fi
mkdir -p "$WORK/results" "$WORK/logs"
RUNS=$WORK/results/runs.tsv
printf 'tool\top\trep\twall_s\tuser_s\tsys_s\tmaxrss_kb\tbytes\n' > "$RUNS"

# --- 1. the archive repository ------------------------------------------------------------------
REPO=$WORK/repo
if [ ! -f "$REPO/refs/heads/corpus/v2" ]; then
    rm -rf "$REPO"
    $BOOTREE --repo="$REPO" init --mode=archive
    $BOOTREE --repo="$REPO" commit -b corpus/v1 -s v1 --add-metadata-string=version=1 \
        --timestamp=@1700000000 --tree=dir="$CORPUS/v1" >/dev/null
    $BOOTREE --repo="$REPO" commit -b corpus/v2 -s v2 --add-metadata-string=version=2 \
        --timestamp=@1700086400 --tree=dir="$CORPUS/v2" >/dev/null
fi

# --- 2. dpkg file lists from the corpus's .debs (the tree itself has no dpkg database) ------------
pkgdb() {  # pkgdb COLUMN DEST: info/<pkg>.list for the versions in versions.lock column 2 or 3
    local col=$1 dest=$2 p v1 v2 v f
    [ -f "$dest/.done" ] && return 0
    rm -rf "$dest"; mkdir -p "$dest/info"
    while read -r p v1 v2; do
        [ "$col" = 2 ] && v=$v1 || v=$v2
        [ "$v" = - ] && continue
        f=$(ls "$CORPUS/.cache/debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -1) || true
        [ -n "$f" ] || return 1
        dpkg-deb --fsys-tarfile "$f" | tar -t | sed -e 's|^\./|/|' -e 's|/$||' | grep -v '^/*$' > "$dest/info/$p.list"
    done < "$CORPUS/versions.lock"
    touch "$dest/.done"
}
DB1=() DB2=() DBNOTE="dpkg file lists of the corpus's .debs"
if [ -f "$CORPUS/versions.lock" ] && [ -d "$CORPUS/.cache/debs" ] && command -v dpkg-deb >/dev/null \
        && pkgdb 2 "$WORK/dpkg-v1" && pkgdb 3 "$WORK/dpkg-v2"; then
    DB1=(--package-db="$WORK/dpkg-v1") DB2=(--package-db="$WORK/dpkg-v2")
else
    DBNOTE="none (no .debs): layers split by directory"
fi

# --- 3. the registry ---------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$PORT
REG=$WORK/registry
rm -rf "$REG"; mkdir -p "$REG"
cat > "$REG/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $REG/data
  delete:
    enabled: true
http:
  addr: $HOST
EOF
LOG=$REG/access.log
docker-registry serve "$REG/config.yml" > "$LOG" 2>/dev/null &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true; wait $REG_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$HOST/v2/" >/dev/null && break; sleep 0.1; done
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$HOST" > "$REG/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$REG/registries.conf
export XDG_CACHE_HOME=$WORK/cache
IMG=$HOST/corpus/os

# Bytes of response bodies the registry sent (GET) from log line N on.
sent_since() {
    awk -v from="$(($1 + 1))" 'NR >= from && match($0, /"GET [^"]*" [0-9]+ [0-9]+/) {
        n = split(substr($0, RSTART, RLENGTH), f, " "); s += f[n] } END { print s + 0 }' "$LOG"
}

measure() {  # measure TOOL OP REP cmd...
    local tool=$1 op=$2 rep=$3; shift 3
    local t="$WORK/logs/$tool.$op.$rep.time" out="$WORK/logs/$tool.$op.$rep.log" n0
    sync
    n0=$(wc -l < "$LOG")
    if ! /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" > "$out" 2>&1; then
        echo "FAILED: $tool $op (rep $rep): $*" >&2; tail -5 "$out" >&2; return 1
    fi
    sleep 0.3
    local wall user sys rss bytes
    read -r wall user sys rss < <(tail -1 "$t")
    bytes=$(sent_since "$n0")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$rep" "$wall" "$user" "$sys" "$rss" "$bytes" >> "$RUNS"
    printf '  %-8s %-10s rep %s: %7.2fs wall, %6d MB RSS, %10d bytes\n' "$tool" "$op" "$rep" "$wall" \
        "$((rss / 1024))" "$bytes"
}

echo "== encapsulate v1 and v2 (--max-layers=$MAX_LAYERS, $COMPRESSION; package db: $DBNOTE)"
measure bootree encap-v1 0 $BOOTREE container encapsulate --repo="$REPO" --max-layers="$MAX_LAYERS" "${DB1[@]}" --compression="$COMPRESSION" \
    --json corpus/v1 "docker://$IMG:v1"
cp "$WORK/logs/bootree.encap-v1.0.log" "$WORK/results/encapsulate-v1.json"
measure bootree encap-v2 0 $BOOTREE container encapsulate --repo="$REPO" --max-layers="$MAX_LAYERS" "${DB2[@]}" --compression="$COMPRESSION" \
    --json corpus/v2 "docker://$IMG:v2"
cp "$WORK/logs/bootree.encap-v2.0.log" "$WORK/results/encapsulate-v2.json"
rm -f "$WORK/results/encapsulate-v2-delta.json"
if [ "$DELTA" = 1 ]; then
    # The same v2 (its blobs are already there) and the delta v1 -> v2 beside it (generation timed).
    measure bootree encap-v2-delta 0 $BOOTREE container encapsulate --repo="$REPO" --max-layers="$MAX_LAYERS" "${DB2[@]}" \
        --compression="$COMPRESSION" --delta-from="docker://$IMG:v1" --json corpus/v2 "docker://$IMG:v2"
    cp "$WORK/logs/bootree.encap-v2-delta.0.log" "$WORK/results/encapsulate-v2-delta.json"
fi
retag() { skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$IMG:$1" "docker://$IMG:latest"; }

# extract.py LAYOUT TAG DEST: every layer in order with tar (owners, xattrs), then drop the
# ostree object store the layers carry (a user's script would commit only the tree).
cat > "$WORK/extract.py" <<'PY'
import json, shutil, subprocess, sys
lay, tag, dest = sys.argv[1:]
idx = json.load(open(f"{lay}/index.json"))
m = next(x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
man = json.load(open(f"{lay}/blobs/sha256/{m['digest'][7:]}"))
for layer in man["layers"]:
    subprocess.run(["tar", "-x", "-f", f"{lay}/blobs/sha256/{layer['digest'][7:]}", "-C", dest, "--same-owner",
                    "--xattrs", "--xattrs-include=*", "--numeric-owner"], check=True)
shutil.rmtree(f"{dest}/sysroot/ostree/repo", ignore_errors=True)
PY

# --- 4. the timed reps ---------------------------------------------------------------------------
for rep in $(seq 1 "$REPS"); do
    echo "== rep $rep"
    SR=$WORK/sysroot.$rep
    rm -rf "$SR" && $BOOTREE admin init-fs "$SR" >/dev/null
    retag v1
    measure bootree switch "$rep" $BOOTREE switch --sysroot="$SR" --stateroot=os "$IMG:latest"
    $BOOTREE admin boot --sysroot="$SR" >/dev/null
    retag v2
    measure bootree upgrade "$rep" $BOOTREE upgrade --sysroot="$SR"

    SK=$WORK/skopeo.$rep
    rm -rf "$SK"; mkdir -p "$SK/tree"
    measure skopeo copy "$rep" skopeo copy -q --src-tls-verify=false "docker://$IMG:v1" "oci:$SK/oci:v1"
    measure tar extract "$rep" python3 "$WORK/extract.py" "$SK/oci" v1 "$SK/tree"
    ostree --repo="$SK/repo" init --mode=bare
    measure ostree commit "$rep" ostree --repo="$SK/repo" commit -b os --tree=dir="$SK/tree"
    # fsck of the deployments' repository (not timed), then free the space for the next rep.
    ostree fsck --repo="$SR/ostree/repo" >/dev/null 2>&1 || echo "  warning: ostree fsck of $SR failed" >&2
    for d in "$SR"/ostree/deploy/*/deploy/*/; do chattr -i "$d" 2>/dev/null || true; done
    rm -rf "$SR" "$SK"
done

# --- summary --------------------------------------------------------------------------------------
python3 - "$RUNS" "$WORK/results" "$DBNOTE" "$MAX_LAYERS" "$COMPRESSION" <<'PY' | tee "$WORK/results/summary.md"
import csv, json, os, statistics, sys
runs, out, dbnote, max_layers, compression = sys.argv[1:]
rows = list(csv.DictReader(open(runs), delimiter="\t"))
def pick(tool, op):
    return [r for r in rows if r["tool"] == tool and r["op"] == op]
def med(rs, key, scale=1.0):
    return statistics.median(float(r[key]) for r in rs) / scale if rs else float("nan")
img = {v: json.load(open(f"{out}/encapsulate-{v}.json")) for v in ("v1", "v2")}
l1 = {x["digest"]: x["size"] for x in img["v1"]["layers"]}
new = [x for x in img["v2"]["layers"] if x["digest"] not in l1]
print(f"# Container updates on the corpus (--max-layers={max_layers}, {compression}, package db: {dbnote})\n")
print(f"v1: {len(img['v1']['layers'])} layers, {sum(l1.values()) / 1e6:.1f} MB; "
      f"v2: {len(img['v2']['layers'])} layers, {len(new)} new ({sum(x['size'] for x in new) / 1e6:.1f} MB)\n")
delta_doc = f"{out}/encapsulate-v2-delta.json"
if os.path.exists(delta_doc):
    d = json.load(open(delta_doc))["delta"]
    print(f"delta v1 -> v2 (bootree format, pushed as an OCI artifact, referrers: {d['referrers']}): "
          f"{d['size'] / 1e6:.1f} MB + layer map {d['layerMapSize'] / 1e3:.1f} kB; the upgrade below fetches it\n")
print("| step | wall s median (min-max) | CPU s | peak RSS MB | MB from the registry |")
print("|---|---|---|---|---|")
steps = [("bootree", "encap-v2-delta", "bootree encapsulate v2 + delta"),
         ("bootree", "switch", "bootree switch v1"), ("bootree", "upgrade", "bootree upgrade v1 -> v2"),
         ("skopeo", "copy", "skopeo copy v1 -> oci:"), ("tar", "extract", "extract the layers (tar)"),
         ("ostree", "commit", "ostree commit of the tree")]
for tool, op, label in steps:
    rs = pick(tool, op)
    if not rs:
        continue
    walls = [float(r["wall_s"]) for r in rs]
    cpu = statistics.median(float(r["user_s"]) + float(r["sys_s"]) for r in rs)
    print(f"| {label} | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | {cpu:.2f} | "
          f"{med(rs, 'maxrss_kb', 1024):.0f} | {med(rs, 'bytes', 1e6):.1f} |")
pair = [sum(float(r["wall_s"]) for r in rows if r["rep"] == rep and r["tool"] in ("skopeo", "tar", "ostree"))
        for rep in sorted({r["rep"] for r in pick("skopeo", "copy")})]
if pair:
    print(f"| skopeo + extract + ostree commit | {statistics.median(pair):.2f} | | | |")
up_mb = med(pick("bootree", "upgrade"), "bytes", 1e6)
sw = med(pick("bootree", "switch"), "wall_s")
rss = max([float(r["maxrss_kb"]) / 1024 for r in rows if r["tool"] == "bootree" and r["op"] in ("switch", "upgrade")]
          or [float("nan")])
print(f"\nTargets: upgrade bytes {up_mb:.1f} MB < 68.6 MB: {'yes' if up_mb < 68.6 else 'NO'}; "
      f"switch {sw:.2f} s < skopeo+extract+commit {statistics.median(pair) if pair else float('nan'):.2f} s: "
      f"{'yes' if pair and sw < statistics.median(pair) else 'NO'}; peak RSS {rss:.0f} MB < 150 MB: "
      f"{'yes' if rss < 150 else 'NO'}")
PY
