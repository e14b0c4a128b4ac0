#!/usr/bin/env python3
"""Checks a report written by scripts/bench/report.py after a smoke run (BENCH_SMOKE=1).

The smoke's numbers mean nothing (debug build, tiny counts, a shared machine); what it
proves is that the harness still works end to end. So this checks shape, not speed: every
section that ran has its heading, every ratio of the summary that section feeds is a
number (not "n/a"), and no run was invalid (report.py lists those under "Invalid runs":
a denied check, an error, an unparsed tool output). Exit status 1 names what is missing.
"""

import argparse
import re
import sys

NUMBER = re.compile(r"^[0-9][0-9,]*(\.[0-9]+)?(×| ms| B)")


def summary_rows(text):
    """The (measure, measured) pairs of the "Summary against the targets" table."""
    rows = []
    part = text.split("## Summary against the targets", 1)
    if len(part) < 2:
        return rows
    for line in part[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("measure", "---"):
            rows.append((cells[0], cells[1]))
    return rows


def expectations(sections, algs, miss_algs):
    """(heading, [summary measure regexes]) per section that ran."""
    exp = []
    if "warm" in sections:
        exp.append(
            (
                "## 1. Warm-cache gRPC throughput",
                [rf"Warm-cache throughput {a} \({t}" for a in algs for t in ("h2load", "loadgen")],
            )
        )
    if "latency" in sections:
        exp.append(("## 2. One request in flight", [rf"One-in-flight p99 {a}$" for a in algs]))
    if "miss" in sections:
        exp.append(
            (
                "## 3. Every check misses the cache",
                [rf"All-miss \(Redis\) throughput {a}$" for a in miss_algs]
                + [rf"All-miss \(Redis\), signature cache warm, {a}$" for a in miss_algs],
            )
        )
    if "http" in sections:
        # No summary row: the ratio is in the section's own table (checked below).
        exp.append(("## 4. HTTP check mode (`/authz`) directly", []))
    if "envoy" in sections:
        through = "Through Envoy, {}: Envoy → tokengate vs Envoy → bare"
        measures = [re.escape(through.format("gRPC")) + "$"]
        measures.append(re.escape(through.format("gRPC, dynamic_metadata off")) + "$")
        measures.append(re.escape(through.format("HTTP mode")) + "$")
        measures.append(re.escape("Through Envoy, gRPC: mutual TLS vs plaintext (both to tokengate)") + "$")
        measures.append(re.escape("HTTP ext_authz mode vs gRPC mode (through Envoy)") + "$")
        measures.append(re.escape("Envoy → tokengate vs Envoy jwt_authn (ES256, no cache)") + "$")
        measures.append(re.escape("Envoy → tokengate vs Envoy jwt_authn (ES256, jwt_cache_config)") + "$")
        exp.append(("## 5. Through a real Envoy", measures))
    if "propagation" in sections:
        exp.append(("## 6. Revocation propagation", [r"Revocation propagation p99 "]))
    if "memory" in sections:
        exp.append(("## 7. Resident memory per cached entry", [r"Resident memory per cached revocation entry "]))
    return exp


def check(text, sections, algs, miss_algs):
    problems = []
    rows = summary_rows(text)
    if not rows:
        problems.append("no summary table")
    for heading, measures in expectations(sections, algs, miss_algs):
        if heading not in text:
            problems.append("missing section: " + heading)
        for pattern in measures:
            found = [(m, v) for m, v in rows if re.match(pattern, m)]
            if not found:
                problems.append("missing summary row: " + pattern)
            for m, v in found:
                if not NUMBER.match(v):
                    problems.append(f"summary row without a number: {m}: {v}")
    if "http" in sections:
        http = text.split("## 4. HTTP check mode (`/authz`) directly", 1)[-1].split("\n## ", 1)[0]
        if not re.search(r"\| ES256, HTTP/1\.1 \|.*\| \*\*[0-9.]+\*\* \|", http):
            problems.append("section 4 has no HTTP ratio")
    if "memory" in sections:
        memory = text.split("## 7. Resident memory per cached entry", 1)[-1].split("\n## ", 1)[0]
        if "INVALID" in memory or len(re.findall(r"\| \*\*[0-9]+\*\* \|", memory)) != 3:
            problems.append("section 7 does not have its three caches")
    if "## Invalid runs" in text:
        invalid = text.split("## Invalid runs", 1)[1].split("\n## ", 1)[0].strip()
        problems.append("invalid runs:\n" + invalid)
    if "## Exact commands" not in text:
        problems.append("missing section: ## Exact commands")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("report")
    ap.add_argument("--sections", required=True, help="BENCH_SECTIONS of the run")
    ap.add_argument("--algs", required=True, help="BENCH_ALGS of the run")
    ap.add_argument("--miss-algs", required=True, help="BENCH_MISS_ALGS of the run")
    args = ap.parse_args()
    try:
        with open(args.report, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"check_report: cannot read the report: {e}", file=sys.stderr)
        return 1
    problems = check(text, args.sections.split(), args.algs.split(), args.miss_algs.split())
    for p in problems:
        print("check_report: " + p, file=sys.stderr)
    if not problems:
        print(f"check_report: {args.report}: every section and ratio present, every run valid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
