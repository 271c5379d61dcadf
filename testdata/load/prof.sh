#!/bin/bash
# prof.sh TAG BRIDGE_BINARY CALLERS ROOMS: a 25 s chorus-load run against a fresh
# bridge, with perf record (10 s) and perf stat of syscalls (5 s) of the bridge
# in the middle of the window. Writes $OUT/prof-TAG.{txt,data,stat}.
# Example: bash testdata/load/prof.sh base-r1000 /tmp/chorus 1000 1
#          perf report -i /tmp/load/prof-base-r1000.data --children --sort symbol -g none
OUT=${OUT:-/tmp/load}; LOAD=${LOAD:-/tmp/chorus-load}; mkdir -p "$OUT"
ulimit -n 20000
$2 --sip-addr 127.0.0.1:5060 --http-addr 127.0.0.1:8080 --rtp-ports 10000-30000 --max-members 1100 --user u1:t1:s1 --log-level warn > $OUT/prof-$1.bridge.log 2>&1 &
BPID=$!; sleep 1
$LOAD --callers $3 --rooms $4 --rate 200 --duration 25s --bridge-pid $BPID --metrics http://127.0.0.1:8080/metrics > $OUT/prof-$1.txt 2>&1 &
LPID=$!
sleep $(( $3 / 200 + 12 ))
perf record -F 499 -g -p $BPID -o $OUT/prof-$1.data -- sleep 10 > /dev/null 2>&1
perf stat -e 'syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendto,context-switches' -p $BPID -- sleep 5 > $OUT/prof-$1.stat 2>&1
wait $LPID
kill -INT $BPID; wait $BPID
