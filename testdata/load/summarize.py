# summarize.py TAG [DIR]: the table of docs/performance.md from series.sh output (medians of the runs).
import json, glob, statistics, sys, re
tag = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/load"
rows = {}
for f in sorted(glob.glob(f"{out}/{tag}-*.json")):
    m = re.match(rf"{out}/{tag}-(.+)-(\d+)\.json", f)
    try:
        r = json.load(open(f))
    except Exception as e:
        print("bad", f, e); continue
    rows.setdefault(m.group(1), []).append(r)
order = ["r10","r100","r500","r1000","g50x5","g200x5"]
def med(xs): return statistics.median(xs) if xs else float('nan')
print(f"| point | members | rooms | runs | CPU %/member (median; runs) | bridge CPU % of a core | RSS KiB/member | anon RSS KiB/member | lateness p99 ms | ≤2 ms | max ms | mean tick µs | setup p50/p99 ms | accepted calls/s | failed | lost (down/up) | heard (dropout frames) | harness cores | other load (cores) |")
print("|"+"---|"*19)
for k in order + [k for k in rows if k not in order]:
    if k not in rows: continue
    rs = rows[k]
    cpu = [r["bridge"]["cpuPercentPerMember"] for r in rs]
    print(f"| {k} | {rs[0]['calls']['answered']} | {rs[0]['run']['rooms']} | {len(rs)} | "
          "%.4f (%s) | " % (med(cpu), ', '.join('%.4f' % x for x in cpu)) + f"{med([r['bridge']['cpuPercent'] for r in rs]):.1f} | "
          f"{med([r['bridge']['rssPerMemberKiB'] for r in rs]):.1f} | "
          f"{med([r['bridge'].get('anonPerMemberKiB', float('nan')) for r in rs]):.1f} | "
          f"{med([r['mixer']['latenessP99Ms'] for r in rs]):.2f} ({', '.join('%.2f' % r['mixer']['latenessP99Ms'] for r in rs)}) | "
          f"{med([r['mixer']['within2ms'] for r in rs]):.4f} | {max(r['mixer']['latenessMaxMs'] for r in rs):.1f} | "
          f"{med([r['mixer']['tickMeanUs'] for r in rs]):.0f} | "
          f"{med([r['calls']['setupP50Ms'] for r in rs]):.1f}/{med([r['calls']['setupP99Ms'] for r in rs]):.1f} | "
          f"{med([r['calls']['acceptedPerS'] for r in rs]):.0f} | {sum(r['calls']['failed'] for r in rs)} | "
          f"{sum(r['rtp']['lost'] for r in rs)}/{sum(max(0,r['rtp']['upstreamLost']) for r in rs)} | "
          f"{sum(r['heard']['correct'] for r in rs)}/{sum(r['heard']['sampled'] for r in rs)} ({sum(r['heard'].get('dropoutFrames',0) for r in rs)}/{sum(r['heard'].get('frames',0) for r in rs)}) | "
          f"{med([r['load']['harnessCores'] for r in rs]):.2f} | "
          f"{', '.join('%.2f' % r['load']['otherCores'] for r in rs)} |")
