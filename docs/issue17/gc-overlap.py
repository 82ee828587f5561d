#!/usr/bin/env python3
"""Of the waits for a P longer than 1 ms in a `go tool trace -d=parsed` dump, counts those during a GC mark phase (or within 1 ms after).
usage: go tool trace -d=parsed X.trace > X.parsed; gc-overlap.py X.parsed"""
import re,sys
head=re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+)(.*)$')
gc=[];open_=None;runnable={};long=[]
for line in open(sys.argv[1]):
    m=head.match(line)
    if not m: continue
    kind,t,rest=m.group(4),int(m.group(5)),m.group(6)
    if kind=='RangeBegin' and 'GC concurrent mark' in rest: open_=t
    elif kind=='RangeEnd' and 'GC concurrent mark' in rest and open_ is not None: gc.append((open_,t)); open_=None
    elif kind=='StateTransition':
        mg=re.search(r'GoID=(\d+) (\w+)->(\w+)',rest)
        if not mg: continue
        g,a,b=int(mg.group(1)),mg.group(2),mg.group(3)
        if b=='Runnable': runnable[g]=t
        elif a=='Runnable' and b=='Running' and g in runnable:
            w=t-runnable.pop(g)
            if w>1_000_000: long.append((t, w))
print('gc mark ranges:',[(round((b-a)/1e6,1)) for a,b in gc])
ing=sum(1 for t,w in long if any(a<=t<=b+1_000_000 for a,b in gc))
print('waits >1ms:',len(long),'during a GC mark (or within 1 ms after):',ing)
