"""Parse an OpenMetrics scrape (stdin) with prometheus_client's strict parser.

Exits non-zero with the parser's error when the text is not valid OpenMetrics 1.0.
Prints one JSON object: the family names and every sample that carries an exemplar
(name, labels, value, exemplar labels, value and timestamp), for tests/it/tracing.rs.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # noqa: BLE001 - any parse error is the answer
        print(f"invalid OpenMetrics: {e}", file=sys.stderr)
        return 1
    out = {"families": [f.name for f in families], "exemplars": []}
    for f in families:
        for s in f.samples:
            if s.exemplar is None:
                continue
            out["exemplars"].append(
                {
                    "name": s.name,
                    "labels": s.labels,
                    "value": s.value,
                    "exemplar": {
                        "labels": s.exemplar.labels,
                        "value": s.exemplar.value,
                        "timestamp": None if s.exemplar.timestamp is None else float(s.exemplar.timestamp),
                    },
                }
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
