"""Which of suggest's Label Studio calls a slow save overlapped, from one `scale_push.py` run.

Run scale_push with `--env LOG_LEVEL=DEBUG` (suggest then logs every Label Studio call with its duration),
keep its work dir's `suggest.log`, then:

    .venv/bin/python benchmarks/save_tail.py RESULT.json suggest.log [--slow-ms 400]

For the saves into project B made after the warm-up, outside A's annotator windows (`timeline`), it prints
the latency quantiles beside Label Studio alone (suggest stopped), and for each save slower than `--slow-ms`
the suggest calls that overlapped it (kind, ms, start relative to the save), with counts by kind for slow and
for fast saves. Why (issue 17): the whole loop's save tail was 2.3-4.8x Label Studio alone while the paced
writes alone cost 0.9-1.5x; this says which calls the slow saves met.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np

CALL = re.compile(r"^(\S+ \S+) DEBUG suggest\.labelstudio: Label Studio (\S+) (\S+): (\d+) in (\d+) ms")


def calls(log: Path, begun: float) -> list[tuple[float, float, str, int]]:
    """(start, end, "METHOD /path/N", ms) of each suggest call, seconds from the run's first save."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if m := CALL.match(line):
            end = dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC).timestamp() - begun
            kind = m[2] + " " + re.sub(r"/\d+", "/N", m[3].split("?")[0])
            out.append((end - int(m[5]) / 1000, end, kind, int(m[5])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path, help="scale_push.py's JSON (with timeline.begun_unix)")
    parser.add_argument("log", type=Path, help="suggest.log of that run, at LOG_LEVEL=DEBUG")
    parser.add_argument("--slow-ms", type=float, default=400.0)
    args = parser.parse_args()
    t = json.loads(args.result.read_text())["timeline"]
    made = calls(args.log, t["begun_unix"])
    windows, stop = t["annotating_in_a"], t["suggest_stopped_at"]

    def inside(x: float) -> bool:
        return any(a <= x <= b for a, b in windows)

    saves = [(s, ms) for s, ms in t["saves"] if windows[0][0] <= s < stop and not inside(s)]
    alone = np.array([ms for s, ms in t["saves"] if s >= stop])
    ms_all = np.array([ms for _, ms in saves])
    ours, theirs = np.percentile(ms_all, [50, 90, 99]), np.percentile(alone, [50, 90, 99])
    print(f"saves outside A's windows: n={len(ms_all)} p50/p90/p99 {'/'.join(f'{v:.0f}' for v in ours)} ms; "
          f"Label Studio alone {'/'.join(f'{v:.0f}' for v in theirs)} ms")
    print(f"suggest's calls logged: {len(made)}")

    def met(s: float, ms: float) -> list[tuple[float, float, str, int]]:
        return [c for c in made if c[0] < s + ms / 1000 and c[1] > s]

    slow = [(s, ms) for s, ms in saves if ms > args.slow_ms]
    fast = [(s, ms) for s, ms in saves if ms <= float(np.percentile(alone, 50)) * 1.2]
    for name, group in ((f"slower than {args.slow_ms:.0f} ms", slow), ("fast (within 1.2x alone's p50)", fast)):
        kinds = collections.Counter(k for s, ms in group for k in {c[2] for c in met(s, ms)})
        print(f"{name}: {len(group)}, meeting a suggest call: {sum(bool(met(s, ms)) for s, ms in group)}; "
              f"by kind: {kinds.most_common(8)}")
    for s, ms in slow:
        print(f"  {s:8.1f} s {ms:6.0f} ms", [(c[2], c[3], round(c[0] - s, 2)) for c in met(s, ms)])


if __name__ == "__main__":
    main()
