#!/bin/bash
# ab.sh OUT "BIN_A BIN_B" "POINTS" ROUNDS: compares bridge binaries under the same
# load, alternating them run by run so that the shared machine's drift falls on both
# alike. Each run starts a fresh bridge on 127.0.0.1:5060/8080 and writes
# OUT/<binary name>-<point>-<round>.json. Points: r10, r100, r1000 (callers in one
# room) and g200x5 (200 rooms of 5); DUR sets the window (default 30s). Example:
#   bash testdata/load/ab.sh /tmp/ab "/tmp/chorus.old /tmp/chorus.new" "r1000 g200x5" 3
# Any bridge environment (CHORUS_MIXER_PRIORITY=normal, say) is passed through.
ulimit -n 20000
OUT=$1; mkdir -p "$OUT"; LOAD=${LOAD:-/tmp/chorus-load}
for i in $(seq 1 "${4:-2}"); do
  for p in $3; do
    case $p in
      r10) C=10; R=1;;
      r100) C=100; R=1;;
      r1000) C=1000; R=1;;
      g200x5) C=1000; R=200;;
      *) echo "unknown point $p" >&2; exit 2;;
    esac
    for bin in $2; do
      tag=$(basename "$bin")
      "$bin" --sip-addr 127.0.0.1:5060 --http-addr 127.0.0.1:8080 --rtp-ports 10000-30000 --max-members 1100 \
        --user u1:t1:s1 --log-level warn > "$OUT/$tag-$p-$i.log" 2>&1 &
      BPID=$!
      sleep 1
      $LOAD --target 127.0.0.1:5060 --callers $C --rooms $R --duration "${DUR:-30s}" --rate 200 --talkers-per-room 3 \
        --bridge-pid $BPID --metrics http://127.0.0.1:8080/metrics --json > "$OUT/$tag-$p-$i.json" 2> "$OUT/$tag-$p-$i.err"
      echo "$tag $p round $i rc=$?"
      kill -INT $BPID; wait $BPID
      sleep 2
    done
  done
done
