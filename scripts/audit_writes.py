#!/usr/bin/env python3
"""Counts the writes in a kube-apiserver audit log (JSON lines, ResponseComplete stage), per user,
in the time windows given by a marks file ("NAME UNIX_SECONDS" lines; a window runs from one mark
to the next). Leases (leader election) are counted apart from the offloading path.

Usage: audit_writes.py AUDIT_LOG MARKS_FILE NAMESPACES USER [USER...]
Prints, per window and user: writes on the offloading path, per namespace, by verb/resource, and
the Lease writes beside them."""
import collections
import datetime
import json
import sys

WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def ts(s):
    # 2026-11-25T15:40:01.123456Z
    return datetime.datetime.strptime(s.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def main():
    log, marks_file, n, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    marks = []
    with open(marks_file) as f:
        for line in f:
            name, t = line.split()
            marks.append((name, float(t)))
    windows = [(marks[i][0], marks[i][1], marks[i + 1][1]) for i in range(len(marks) - 1)]
    counts = {(w[0], u): collections.Counter() for w in windows for u in users}
    failed = collections.Counter()
    with open(log) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITES:
                continue
            user = ev.get("user", {}).get("username")
            if user not in users:
                continue
            t = ts(ev["requestReceivedTimestamp"])
            ref = ev.get("objectRef", {})
            res = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            code = ev.get("responseStatus", {}).get("code", 0)
            for name, lo, hi in windows:
                if lo <= t < hi:
                    counts[(name, user)][(ev["verb"], res)] += 1
                    if code >= 400:
                        failed[(name, user, code)] += 1
    for name, lo, hi in windows:
        for user in users:
            c = counts[(name, user)]
            lease = sum(v for (verb, res), v in c.items() if res == "leases")
            path = sum(c.values()) - lease
            detail = ", ".join(f"{verb} {res} {v}" for (verb, res), v in sorted(c.items()) if res != "leases")
            fails = ", ".join(f"{code}: {v}" for (w, u, code), v in sorted(failed.items()) if w == name and u == user)
            print(f"audit {name:<10} {user:<20} {path:>7} writes ({path / n:.2f} per namespace) in {hi - lo:.0f} s"
                  f"; leases {lease}" + (f"; failed {fails}" if fails else ""))
            if detail:
                print(f"      {'':<10} {'':<20} {detail}")


if __name__ == "__main__":
    main()
