"""The IAB label sets, the AudioSet -> IAB mapping and its builder (scripts/build_iab_mapping.py)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from scripts.build_iab_mapping import (
                                       NO_RULE_REASON, Rule, build_mapping_rows, build_mapping_text, propagate_rules, read_ontology,
                                       read_rules)
from utils.config import AUDIOSET_LABELS_CSV, METADATA_DIR, REPO_DIR
from utils.iab_labels import (label_set_csv, load_label_set, load_mapping, mapping_csv,
                              mapping_matrix, mids_to_target, most_specific, split_labels)
from utils.utilities import UsageError

TAXONOMY_TSV = os.path.join(METADATA_DIR, "iab_content_taxonomy_3.0.tsv")
EXPECTED_LABELS = {
    5: ["Automotive", "Food & Drink", "Pets", "War & Conflicts", "Music"],
    20: ["Automotive", "Food & Drink", "Pets", "War and Conflicts", "Attractions",
         "Books and Literature", "Crime", "Disasters", "Entertainment", "Events",
         "Family and Relationships", "Healthy Living", "Holidays", "Home & Garden",
         "Medical Health", "Religion & Spirituality", "Science", "Sports",
         "Technology & Computing", "Travel"],
}
BARK, CAR, GUNSHOT, GUITAR, SPEECH = "/m/05tny_", "/m/0k4j", "/m/032s66", "/m/0342h", "/m/09x0r"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def audioset_mids():
    return [row["mid"] for row in read_csv(AUDIOSET_LABELS_CSV)]


def read_taxonomy():
    """{unique id: (name, 'Tier 1 > Tier 2 ...')}, parsed here independently of the code under test.

    The file has CRLF endings, two header lines, and one more row after an empty line.
    """
    with open(TAXONOMY_TSV, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[1].split("\t")[:3] == ["Unique ID", "Parent", "Name"]
    taxonomy = {}
    for line in lines[2:]:
        if not line.strip():
            continue
        cells = line.split("\t")
        unique_id, name, tiers = cells[0].strip(), cells[2].strip(), cells[3:7]
        taxonomy[unique_id] = (name, " > ".join(t.strip() for t in tiers if t.strip()))
    return taxonomy


@pytest.mark.parametrize("num_labels", [5, 20])
def test_mapping_lists_all_audioset_classes_in_class_list_order(num_labels):
    class_rows = read_csv(AUDIOSET_LABELS_CSV)
    mapping_rows = read_csv(mapping_csv(num_labels))
    assert len(class_rows) == 527
    assert [r["mid"] for r in mapping_rows] == [r["mid"] for r in class_rows]
    assert [int(r["index"]) for r in mapping_rows] == list(range(527))
    assert [r["display_name"] for r in mapping_rows] == [r["display_name"] for r in class_rows]
    assert all(r["reason"] for r in mapping_rows)


@pytest.mark.parametrize("num_labels", [5, 20])
def test_every_label_is_known_and_reached_by_some_class(num_labels):
    labels = load_label_set(num_labels)
    assert labels == EXPECTED_LABELS[num_labels]
    used = [label for row in read_csv(mapping_csv(num_labels))
            for label in split_labels(row["iab_labels"])]
    assert set(used) <= set(labels)
    assert {label: used.count(label) for label in labels if used.count(label) == 0} == {}


@pytest.mark.parametrize("num_labels", [5, 20])
def test_label_set_entries_exist_in_the_taxonomy(num_labels):
    taxonomy = read_taxonomy()
    assert len(taxonomy) == 703  # 702 rows, then one more after the empty line
    assert taxonomy["389"] == ("War and Conflicts", "War and Conflicts")  # that trailing row
    for row in read_csv(label_set_csv(num_labels)):
        assert row["iab_unique_id"] in taxonomy, row
        name, tier_path = taxonomy[row["iab_unique_id"]]
        assert row["iab_name"] == name
        assert row["iab_tier_path"] == tier_path
    spelled = {row["label"]: row["iab_name"] for row in read_csv(label_set_csv(num_labels))}
    if num_labels == 5:
        assert spelled["War & Conflicts"] == "War and Conflicts"
        assert spelled["Music"] == "Music" and taxonomy["338"][1] == "Entertainment > Music"


@pytest.mark.parametrize("num_labels", [5, 20])
def test_committed_mapping_equals_what_the_rules_build(num_labels):
    with open(mapping_csv(num_labels), newline="", encoding="utf-8") as f:
        committed = f.read()
    _, rebuilt = build_mapping_text(num_labels)
    assert committed == rebuilt, "rerun python3 scripts/build_iab_mapping.py"


def test_chosen_branches_map_as_documented():
    five = {row["mid"]: split_labels(row["iab_labels"]) for row in read_csv(mapping_csv(5))}
    twenty = {row["mid"]: split_labels(row["iab_labels"]) for row in read_csv(mapping_csv(20))}
    assert five[BARK] == ["Pets"] and five[CAR] == ["Automotive"]
    assert five[GUNSHOT] == ["War & Conflicts"] and five[GUITAR] == ["Music"]
    assert five[SPEECH] == [] and twenty[SPEECH] == []
    assert twenty[GUITAR] == ["Entertainment"]
    assert twenty["/m/07jdr"] == ["Travel"] and five["/m/07jdr"] == []  # Train: not Automotive
    assert twenty["/m/04qvtq"] == ["Crime"]                              # Police car (siren)


# --- propagation on a tiny hand-made ontology -------------------------------------------------

def tiny_ontology():
    """root -> parent -> child -> grandchild; shared has two parents (child and other)."""
    def node(name, *child_ids):
        return {"name": name, "child_ids": list(child_ids)}
    return {
        "root": node("Root", "parent", "other"),
        "parent": node("Parent", "child"),
        "child": node("Child", "grandchild", "shared"),
        "grandchild": node("Grandchild"),
        "other": node("Other", "shared"),
        "shared": node("Shared"),
        "loner": node("Loner"),
    }


def test_parent_rule_reaches_grandchild():
    result = propagate_rules(tiny_ontology(), {"parent": Rule(("A",), "because A")})
    assert result["grandchild"].labels == {"A"}
    assert result["grandchild"].rule_ids == ("parent",)
    assert result["root"].labels == frozenset() and result["loner"].rule_ids == ()


def test_empty_child_rule_removes_inherited_label():
    rules = {"parent": Rule(("A",), "because A"), "child": Rule((), "not A here")}
    result = propagate_rules(tiny_ontology(), rules)
    assert result["parent"].labels == {"A"}
    assert result["child"].labels == frozenset() and result["child"].own_rule
    assert result["grandchild"].labels == frozenset()
    assert result["grandchild"].rule_ids == ("child",)


def test_node_with_two_parents_takes_the_union_and_own_rule_wins():
    rules = {"parent": Rule(("A",), "because A"), "other": Rule(("B",), "because B")}
    result = propagate_rules(tiny_ontology(), rules)
    assert result["shared"].labels == {"A", "B"}
    assert set(result["shared"].rule_ids) == {"parent", "other"}
    # an explicit empty rule on one path does not remove what the other path brings
    rules["child"] = Rule((), "not A here")
    assert propagate_rules(tiny_ontology(), rules)["shared"].labels == {"B"}
    rules["shared"] = Rule(("C",), "own")
    assert propagate_rules(tiny_ontology(), rules)["shared"].labels == {"C"}


def test_rows_keep_class_order_and_explain_the_rule():
    ontology = tiny_ontology()
    rules = {"parent": Rule(("B", "A"), "why"), "child": Rule((), "not here")}
    classes = [("grandchild", "Grandchild"), ("parent", "Parent"), ("loner", "Loner")]
    rows = build_mapping_rows(classes, ontology, rules, ["A", "B"])
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["iab_labels"] for r in rows] == ["", "A;B", ""]
    assert [r["reason"] for r in rows] == [
        "inherited from Child: not here", "own rule: why", NO_RULE_REASON]


# --- rules file validation --------------------------------------------------------------------

def write_rules(path, *rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["mid", "display_name", "iab_labels", "reason"])
        writer.writerows(rows)
    return str(path)


@pytest.mark.parametrize("row, message", [
    (["parent", "Parent", "Nope", "x"], "'Nope' are not in the label set"),
    (["parent", "Wrong name", "A", "x"], "is called 'Parent'"),
    (["missing", "Missing", "A", "x"], "not an AudioSet ontology id"),
    (["parent", "Parent", "A", ""], "needs a reason"),
])
def test_bad_rules_name_the_file_and_line(tmp_path, row, message):
    path = write_rules(tmp_path / "rules.csv", row)
    with pytest.raises(UsageError, match=message) as error:
        read_rules(path, tiny_ontology(), ["A", "B"])
    assert f"{path}, line 2" in str(error.value)


def test_committed_rules_name_real_nodes():
    ontology = read_ontology()
    for num_labels in (5, 20):
        rules = read_rules(os.path.join(METADATA_DIR, f"iab_mapping_rules_{num_labels}.csv"),
                           ontology, load_label_set(num_labels))
        assert "/m/04rlf" in rules  # Music


# --- utils.iab_labels -------------------------------------------------------------------------

@pytest.mark.parametrize("num_labels", [5, 20])
def test_mapping_matrix_matches_mapping(num_labels):
    matrix = mapping_matrix(num_labels)
    assert matrix.shape == (527, num_labels) and matrix.dtype == np.float32
    mapping = load_mapping(num_labels)
    for row, mid in enumerate(audioset_mids()):
        assert np.flatnonzero(matrix[row]).tolist() == mapping[mid]
    matrix[:] = 7  # callers get their own copy
    assert mapping_matrix(num_labels).max() == 1.0


def test_mids_to_target():
    labels = load_label_set(5)
    target = mids_to_target([BARK, CAR, "/m/not_a_class"], 5)
    assert target.dtype == np.float32 and target.shape == (5,)
    assert [labels[i] for i in np.flatnonzero(target)] == ["Automotive", "Pets"]
    np.testing.assert_array_equal(mids_to_target(f"{BARK},{CAR}", 5), target)
    assert not mids_to_target([SPEECH], 5).any() and not mids_to_target([], 20).any()
    # equals the OR of the mapping-matrix rows of those classes
    rows = [audioset_mids().index(m) for m in (BARK, CAR, GUNSHOT)]
    np.testing.assert_array_equal(mids_to_target([BARK, CAR, GUNSHOT], 20),
                                  mapping_matrix(20)[rows].max(axis=0))


def test_custom_mapping_csv(tmp_path):
    path = tmp_path / "my_mapping.csv"
    path.write_text(f"mid,iab_labels\n{SPEECH},Music\n{BARK},Pets;Music\n")
    assert load_mapping(5, str(path)) == {SPEECH: [4], BARK: [2, 4]}
    matrix = mapping_matrix(5, str(path))
    assert matrix.sum() == 3 and matrix[audioset_mids().index(SPEECH), 4] == 1
    np.testing.assert_array_equal(mids_to_target([SPEECH, CAR], 5, str(path)), [0, 0, 0, 0, 1])


@pytest.mark.parametrize("content, message", [
    (f"mid,iab_labels\n{BARK},Dogs\n", "'Dogs' are not in the 5-label set"),
    (f"mid,labels\n{BARK},Pets\n", "missing column"),
    ("mid,iab_labels\n/m/nope,Pets\n", "not an AudioSet class"),
])
def test_bad_custom_mapping_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        mids_to_target([BARK], 5, str(path))
    assert str(path) in str(error.value)


def test_missing_mapping_file_and_bad_label_set_size(tmp_path):
    with pytest.raises(UsageError, match="file not found") as error:
        load_mapping(5, str(tmp_path / "none.csv"))
    assert "none.csv" in str(error.value)
    with pytest.raises(UsageError, match="5, 20"):
        load_label_set(7)


# --- the command line -------------------------------------------------------------------------

def run_builder(*args):
    return subprocess.run([sys.executable, os.path.join(REPO_DIR, "scripts", "build_iab_mapping.py"),
                           *args], capture_output=True, text=True, cwd=REPO_DIR)


def test_cli_builds_a_custom_mapping_and_rejects_bad_rules(tmp_path):
    rules = write_rules(tmp_path / "rules.csv", ["/m/0jbk", "Animal", "Pets", "all animals"])
    output = tmp_path / "out.csv"
    done = run_builder("--num_labels", "5", "--rules", rules, "--output", str(output))
    assert done.returncode == 0, done.stderr
    rows = read_csv(output)
    assert len(rows) == 527
    assert {r["display_name"] for r in rows if r["iab_labels"] == "Pets"} >= {"Bark", "Roar"}
    assert rows[0]["iab_labels"] == "" and rows[0]["reason"] == NO_RULE_REASON

    bad = write_rules(tmp_path / "bad.csv", ["/m/0jbk", "Animal", "Unicorns", "x"])
    done = run_builder("--num_labels", "5", "--rules", bad, "--output", str(output))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "bad.csv, line 2" in done.stderr
    assert "Traceback" not in done.stderr


def test_ancestor_co_labels_do_not_leak_labels():
    """The most specific mids decide: Aircraft clips tagged Vehicle too are not Automotive,
    Car clips tagged Vehicle are; a Cap gun (a child of Gunshot) is no War & Conflicts."""
    labels = load_label_set(5)
    automotive, war = labels.index("Automotive"), labels.index("War & Conflicts")
    aircraft, vehicle, car = "/m/0k5j", "/m/07yv9", "/m/0k4j"
    assert most_specific([aircraft, vehicle]) == [aircraft]
    assert mids_to_target([aircraft, vehicle], 5)[automotive] == 0
    assert mids_to_target([aircraft, vehicle], 5, specific_only=False)[automotive] == 1
    assert mids_to_target([car, vehicle], 5)[automotive] == 1
    assert mids_to_target(["/m/073cg4", "/m/032s66"], 5)[war] == 0  # Cap gun, Gunshot
    assert mids_to_target(["/m/032s66"], 5)[war] == 1  # a gunshot alone still is


def test_dry_run_counts_labels_of_the_plain_header_segment_list(tmp_path):
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text('YTID,start_seconds,end_seconds,positive_labels\n'
                        'a,0.000,10.000,"/m/0k5j,/m/07yv9"\n'
                        'b,0.000,10.000,"/m/0k4j,/m/07yv9"\n')
    result = subprocess.run([sys.executable, os.path.join(REPO_DIR, "utils", "features.py"),
                             "pack_audioset_to_hdf5", f"--segments_csv={csv_path}",
                             f"--workspace={tmp_path / 'ws'}", "--dry_run"],
                            capture_output=True, text=True, cwd=REPO_DIR)
    assert result.returncode == 0, result.stderr
    automotive = next(line for line in result.stdout.splitlines() if line.startswith("Automotive"))
    assert automotive.split()[1:] == ["2", "1", "-1"]
    assert not (tmp_path / "ws" / "features" / "waveform.h5").exists()
