#!/bin/bash
# series.sh TAG BRIDGE_BINARY: runs every load point (or those in $POINTS)
# 3 times, each against a
# freshly started bridge on 127.0.0.1:5060/8080, and writes
# $OUT/TAG-<point>-<run>.json (OUT defaults to /tmp/load). Build first:
#   go build -o /tmp/chorus ./cmd/chorus && go build -o /tmp/chorus-load ./cmd/chorus-load
#   bash testdata/load/series.sh base /tmp/chorus
# Summarise with: python3 testdata/load/summarize.py base
TAG=$1; BIN=$2
OUT=${OUT:-/tmp/load}; LOAD=${LOAD:-/tmp/chorus-load}; mkdir -p "$OUT"
ulimit -n 20000
cd "$(dirname "$0")/../.."
run() { # name callers rooms duration rate
  for i in 1 2 3; do
    "$BIN" --sip-addr 127.0.0.1:5060 --http-addr 127.0.0.1:8080 --rtp-ports 10000-30000 --max-members 1100 --user u1:t1:s1 --log-level warn > $OUT/$TAG-$1-$i.bridge.log 2>&1 &
    BPID=$!
    sleep 1
    $LOAD --target 127.0.0.1:5060 --callers $2 --rooms $3 --duration $4 --rate $5 --talkers-per-room 3 \
      --bridge-pid $BPID --metrics http://127.0.0.1:8080/metrics --json > $OUT/$TAG-$1-$i.json 2>$OUT/$TAG-$1-$i.err
    echo "$TAG $1 run $i rc=$?"
    kill -INT $BPID; wait $BPID
    sleep 3
  done
}
for p in ${POINTS:-r10 r100 r500 r1000 g50x5 g200x5}; do
  case $p in
    r10) run r10 10 1 20s 50;;
    r100) run r100 100 1 20s 100;;
    r500) run r500 500 1 30s 200;;
    r1000) run r1000 1000 1 60s 200;;
    g50x5) run g50x5 250 50 30s 200;;
    g200x5) run g200x5 1000 200 60s 200;;
  esac
done
