#!/usr/bin/env python3
"""Where allocations are made (issue 17; hot-profile.sh WHAT=allocsites).

Reads `perf script -F comm,event,ip,sym` output of uprobes on mimalloc's entry points and
puts each allocation under the first frame (innermost first) that names one of PLACES:
the first four are looked for before the others, so a sale's record copied inside the
settle path counts as the copy. Prints a Markdown table: the share of each place and,
when given the allocations per request (from a count-allocs build), that share of them.

usage: allocsites.py <perf-script.txt> [allocations-per-request]
"""
import collections
import re
import sys

PLACES = [
    ("the sale's record copied (SaleSettled::clone)", r"SaleSettled as core::clone"),
    ("JSON path tracking (serde_path_to_error)", r"serde_path_to_error"),
    ("phone normalization (phonenumber)", r"phonenumber|domain::phone::normalize"),
    ("the journal's writer thread", r"journal::Writer::run"),
    ("the sale's assembly and the recent sales (settle)", r"decide::.*settle::|memory::sales::Sales::record"),
    ("the buyer's request (signature, body, hyper client)", r"leadrouter::buyers::|native_body"),
    ("lead parse and validation (serde_json, domain::lead)", r"api::http::parse_json|domain::lead::"),
    ("the decision trace", r"memory::traces"),
    ("our handlers and engine, everything else", r"leadrouter::(engine|api|domain|store|telemetry)"),
    ("HTTP server and client stack (hyper, axum, tower, http)", r"hyper|axum|tower|http::|http_body|leadrouter_http"),
]
ELSE = "the runtime, std"
FIRST = 4


def stacks(path):
    """Each sample's frames, innermost first."""
    current = None
    with open(path, errors="replace") as lines:
        for line in lines:
            if line.strip() and not line.startswith("\t"):
                if current is not None:
                    yield current
                current = []
            elif current is not None:
                parts = line.strip().split(" ", 1)
                if len(parts) == 2:
                    current.append(parts[1])
    if current is not None:
        yield current


def place(frames):
    for group in (PLACES[:FIRST], PLACES[FIRST:]):
        for frame in frames:
            for name, pattern in group:
                if re.search(pattern, frame):
                    return name
    return ELSE


def main():
    per_request = float(sys.argv[2]) if len(sys.argv) > 2 else None
    counts = collections.Counter(place(frames[1:]) for frames in stacks(sys.argv[1]))
    total = sum(counts.values())
    if total == 0:
        sys.exit("no allocations in the input")
    print(f"{total} allocations sampled")
    print("| where | share |")
    print("| --- | ---: |")
    for name in [name for name, _ in PLACES] + [ELSE]:
        share = counts[name] / total
        extra = f" ({share * per_request:.0f})" if per_request else ""
        print(f"| {name} | {100 * share:.1f}%{extra} |")


if __name__ == "__main__":
    main()
