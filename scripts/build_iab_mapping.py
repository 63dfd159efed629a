"""Build metadata/audioset_to_iab_{5,20}.csv from the hand-written rules in iab_mapping_rules_*.csv.

A rule names one AudioSet ontology node (any id, abstract ones included) and the IAB labels it
gets; an empty label list means "explicitly no label". Each rule reaches the node and all its
descendants (child_ids), unless a nearer rule overrides it. A node with several parents takes the
union of the labels that reach it through each parent. See docs/iab_mapping.md.

    python3 scripts/build_iab_mapping.py                       # rebuild both committed mappings
    python3 scripts/build_iab_mapping.py --num_labels 20 --rules my_rules.csv --output my_map.csv
"""
import argparse
import csv
import io
import json
import os
import sys
from typing import NamedTuple

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils.arguments import Parser
from utils.config import AUDIOSET_LABELS_CSV, METADATA_DIR
from utils.iab_labels import (
                              LABEL_SEPARATOR, LABEL_SET_SIZES, MAPPING_COLUMNS, label_set_csv, mapping_csv,
                              read_audioset_classes, read_csv_rows, read_label_set_csv, rules_csv, split_labels)
from utils.utilities import UsageError, atomic_write_text, run_cli

ONTOLOGY_JSON = os.path.join(METADATA_DIR, "audioset_ontology.json")
RULE_COLUMNS = ("mid", "display_name", "iab_labels", "reason")
NO_RULE_REASON = "no rule on this class or its ancestors"


class Rule(NamedTuple):
    labels: tuple
    reason: str


class Assignment(NamedTuple):
    labels: frozenset
    rule_ids: tuple      # the rule nodes the labels came from (empty: no rule reached the node)
    own_rule: bool


def read_ontology(path=ONTOLOGY_JSON):
    """{node id: {"name": ..., "child_ids": [...]}} from the AudioSet ontology JSON."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: file not found; check the path")
    try:
        with open(path, encoding="utf-8") as f:
            nodes = json.load(f)
        return {node["id"]: {"name": node["name"], "child_ids": list(node["child_ids"])}
                for node in nodes}
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{path}: not an AudioSet ontology JSON ({error})") from None


def read_rules(path, ontology, labels):
    """{node id: Rule}; every rule must name a real node by its ontology name and known labels."""
    known_labels = set(labels)
    rules = {}
    for line, row in enumerate(read_csv_rows(path, RULE_COLUMNS), start=2):
        mid, name, reason = row["mid"].strip(), row["display_name"].strip(), row["reason"].strip()
        where = f"{path}, line {line}"
        if mid not in ontology:
            raise UsageError(f"{where}: {mid!r} is not an AudioSet ontology id")
        # The name is checked so a mistyped mid cannot silently label the wrong branch.
        if name != ontology[mid]["name"]:
            raise UsageError(f"{where}: {mid} is called {ontology[mid]['name']!r} in the "
                             f"ontology, not {name!r}")
        if mid in rules:
            raise UsageError(f"{where}: a second rule for {mid} ({name})")
        rule_labels = split_labels(row["iab_labels"])
        unknown = [label for label in rule_labels if label not in known_labels]
        if unknown:
            raise UsageError(f"{where}: label(s) {', '.join(map(repr, unknown))} are not in the "
                             f"label set ({'; '.join(labels)})")
        if not reason:
            raise UsageError(f"{where}: the rule for {name} needs a reason")
        rules[mid] = Rule(tuple(rule_labels), reason)
    return rules


def propagate_rules(ontology, rules):
    """{node id: Assignment} for every ontology node.

    A node's own rule wins outright; otherwise it takes the union of what its parents got.
    The sources kept for the reason are those that contributed labels, or, when nothing did,
    the explicit empty rules that reached it.
    """
    parents = {node_id: [] for node_id in ontology}
    for node_id, node in ontology.items():
        for child_id in node["child_ids"]:
            parents.setdefault(child_id, []).append(node_id)

    assignments, in_progress = {}, set()

    def resolve(node_id):
        if node_id in assignments:
            return assignments[node_id]
        if node_id in in_progress:
            raise ValueError(f"the ontology has a cycle through {node_id}")
        in_progress.add(node_id)
        if node_id in rules:
            result = Assignment(frozenset(rules[node_id].labels), (node_id,), True)
        else:
            inherited = [resolve(parent_id) for parent_id in parents.get(node_id, [])]
            labels = frozenset().union(*(a.labels for a in inherited))
            contributing = [a for a in inherited if a.labels or not labels]
            rule_ids = tuple(dict.fromkeys(r for a in contributing for r in a.rule_ids))
            result = Assignment(labels, rule_ids, False)
        in_progress.discard(node_id)
        assignments[node_id] = result
        return result

    for node_id in ontology:
        resolve(node_id)
    return assignments


def describe(assignment, ontology, rules):
    if assignment.own_rule:
        return f"own rule: {rules[assignment.rule_ids[0]].reason}"
    if not assignment.rule_ids:
        return NO_RULE_REASON
    return " | ".join(f"inherited from {ontology[rule_id]['name']}: {rules[rule_id].reason}"
                      for rule_id in assignment.rule_ids)


def build_mapping_rows(classes, ontology, rules, labels):
    """One row per AudioSet class, in class-list order, with its labels in label-set order."""
    assignments = propagate_rules(ontology, rules)
    rows = []
    for index, (mid, display_name) in enumerate(classes):
        if mid not in assignments:
            raise UsageError(f"AudioSet class {mid} ({display_name}) is not in the ontology")
        assignment = assignments[mid]
        rows.append({
            "index": index, "mid": mid, "display_name": display_name,
            "iab_labels": LABEL_SEPARATOR.join(l for l in labels if l in assignment.labels),
            "reason": describe(assignment, ontology, rules)})
    return rows


def mapping_csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MAPPING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def build_mapping_text(num_labels, rules_path=None, ontology_path=ONTOLOGY_JSON,
                       classes_path=AUDIOSET_LABELS_CSV):
    """(rows, CSV text) of the mapping for the committed num_labels label set."""
    labels = read_label_set_csv(label_set_csv(num_labels))
    ontology = read_ontology(ontology_path)
    rules = read_rules(rules_path or rules_csv(num_labels), ontology, labels)
    rows = build_mapping_rows(read_audioset_classes(classes_path), ontology, rules, labels)
    return rows, mapping_csv_text(rows)


def classes_per_label(rows, labels):
    return {label: sum(label in split_labels(row["iab_labels"]) for row in rows)
            for label in labels}


def parse_args():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_labels", type=int, choices=LABEL_SET_SIZES,
                        help="build only this label set (default: both)")
    parser.add_argument("--rules", help="rules CSV (default metadata/iab_mapping_rules_<N>.csv)")
    parser.add_argument("--output", help="mapping CSV to write "
                                         "(default metadata/audioset_to_iab_<N>.csv)")
    args = parser.parse_args()
    if (args.rules or args.output) and args.num_labels is None:
        raise UsageError("--rules/--output need --num_labels 5 or 20 (which label set they use)")
    return args


def main():
    args = parse_args()
    for num_labels in ([args.num_labels] if args.num_labels else LABEL_SET_SIZES):
        rows, text = build_mapping_text(num_labels, args.rules)
        output = args.output or mapping_csv(num_labels)
        atomic_write_text(text, output)
        labelled = sum(bool(row["iab_labels"]) for row in rows)
        print(f"{output}: {len(rows)} classes, {labelled} with at least one label")
        for label, count in classes_per_label(rows, read_label_set_csv(
                label_set_csv(num_labels))).items():
            print(f"  {label}: {count}")
            if count == 0:
                print(f"warning: no AudioSet class maps to {label!r}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
