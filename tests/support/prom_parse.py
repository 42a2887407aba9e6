"""Reads a Prometheus text-format page on stdin with the official client's parser and prints
its samples as JSON: [{"family", "type", "name", "labels", "value"}, ...]. A page the parser
refuses makes this exit non-zero."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
        })
json.dump(samples, sys.stdout)
