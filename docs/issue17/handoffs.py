#!/usr/bin/env python3
"""Counts goroutine wake-ups in a `go tool trace -d=parsed` dump and names
each woken goroutine by where it had blocked and the waker by where it woke it.
usage: go tool trace -d=parsed X.trace | handoffs.py MESSAGES"""
import re, sys, collections
msgs = float(sys.argv[1])
head = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+)(.*)$')
def label(stack):
    for f in stack:
        if f.startswith(('runtime.', 'internal/', 'sync.', 'time.', 'net.', 'syscall.', 'os.')) and not f.startswith('internal/poll'):
            continue
        if f.startswith('internal/poll'): continue
        return f.split(' @')[0].replace('github.com/','')
    return stack[0].split(' @')[0] if stack else '?'
events = []
cur = None
for line in sys.stdin:
    m = head.match(line)
    if m:
        cur = [int(m.group(3)), m.group(4), int(m.group(5)), m.group(6), []]
        events.append(cur)
    elif line.startswith('\t') and not line.startswith('\t\t') and cur is not None:
        cur[4].append(line.strip())
blocked = {}   # goid -> label where it blocked
created = {}   # goid -> label of creator
wakes = collections.Counter(); starts = collections.Counter(); pwakes = 0
t0 = t1 = None
for g, kind, t, rest, stack in events:
    if kind != 'StateTransition': continue
    t0 = t if t0 is None else t0; t1 = t
    mg = re.search(r'GoID=(\d+) (\w+)->(\w+) Reason="([^"]*)"', rest)
    if not mg:
        if 'Idle->Running' in rest: pwakes += 1
        continue
    goid, a, b, reason = int(mg.group(1)), mg.group(2), mg.group(3), mg.group(4)
    if b == 'Waiting' and a == 'Running':
        blocked[goid] = reason + ' in ' + label(stack)
    elif a == 'Waiting' and b == 'Runnable':
        who = blocked.get(goid, '(blocked before the trace) ' + str(goid)[:0])
        waker = 'netpoller/runtime (no G)' if g == -1 else label(stack)
        wakes[(who, waker)] += 1
    elif a == 'NotExist' and b == 'Runnable':
        starts[label(stack)] += 1
print('window %.2f s, %d messages; per message:' % ((t1 - t0) / 1e9, msgs))
print('  goroutine wake-ups (Waiting->Runnable): %.2f' % (sum(wakes.values()) / msgs))
for (who, waker), n in wakes.most_common(12):
    if n / msgs >= 0.02: print('    %.2f  %s  <-woken by-  %s' % (n / msgs, who, waker))
print('  goroutines started: %.2f' % (sum(starts.values()) / msgs))
for w, n in starts.most_common(5):
    if n / msgs >= 0.02: print('    %.2f  by %s' % (n / msgs, w))
print('  P wake-ups (Idle->Running): %.2f' % (pwakes / msgs))
# time from Waiting->Runnable to Runnable->Running (the wait for a P and a thread), per woken goroutine kind,
# and how long goroutines stayed blocked, per kind
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))] if v else 0
runnable = {}; kindof = {}; blockstart = {}
sched = collections.defaultdict(list); blockd = collections.defaultdict(list)
for g, kind, t, rest, stack in events:
    if kind != 'StateTransition': continue
    mg = re.search(r'GoID=(\d+) (\w+)->(\w+) Reason="([^"]*)"', rest)
    if not mg: continue
    goid, a, b, reason = int(mg.group(1)), mg.group(2), mg.group(3), mg.group(4)
    if a == 'Running' and b == 'Waiting':
        kindof[goid] = reason + ' in ' + label(stack); blockstart[goid] = t
    elif b == 'Runnable':
        runnable[goid] = t
        if a == 'Waiting' and goid in blockstart:
            blockd[kindof[goid]].append(t - blockstart.pop(goid))
        if a == 'NotExist': kindof[goid] = 'new ' + label(stack)
    elif a == 'Runnable' and b == 'Running' and goid in runnable:
        sched[kindof.get(goid, '?')].append(t - runnable.pop(goid))
print('  wait for a P once runnable (µs): kind: n p50 p99 p99.9 max')
for k, v in sorted(sched.items(), key=lambda kv: -len(kv[1]))[:8]:
    print('    %-75s %6d %6.1f %7.1f %7.1f %7.1f' % (k[:75], len(v), pct(v, .5) / 1e3, pct(v, .99) / 1e3, pct(v, .999) / 1e3, max(v) / 1e3))
print('  time blocked (µs): kind: n p50 p99 p99.9')
for k, v in sorted(blockd.items(), key=lambda kv: -len(kv[1]))[:6]:
    print('    %-75s %6d %8.1f %8.1f %8.1f' % (k[:75], len(v), pct(v, .5) / 1e3, pct(v, .99) / 1e3, pct(v, .999) / 1e3))
