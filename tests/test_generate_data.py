"""generate_data.py: exact checks of the bioS layout, determinism, and every bad input."""

from __future__ import annotations

import filecmp
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from helpers.common import NUM_PEOPLE, SEED, run_generate

from engram_data import render, write
from engram_data.contract import DEFAULT_VARIANTS, FIELDS, QA_PREFIX, VARIANTS, DataError, read_jsonl
from engram_data.pools import load_pools
from engram_data.population import synthesize
from engram_data.render import QUESTIONS, REVERSE_GIVEN
from engram_data.templates import TEMPLATES

DATE_RE = re.compile(
    r"^(January|February|March|April|May|June|July|August|September|October|November|December) (\d{1,2}), (\d{4})$"
)
LAYOUT = [
    "manifest.json",
    "people.jsonl",
    "qa/birth_city.jsonl",
    "qa/birth_date.jsonl",
    "qa/company_city.jsonl",
    "qa/employer.jsonl",
    "qa/major.jsonl",
    "qa/reverse.jsonl",
    "qa/university.jsonl",
    "train/bioS.jsonl",
    "train/bioS_fullname.jsonl",
    "train/bioS_multi5_permutes.jsonl",
    "train/qa_reverse_train.jsonl",
    "train/qa_train.jsonl",
]


@pytest.fixture(scope="module")
def people(bios_dir):
    return read_jsonl(bios_dir / "people.jsonl")


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_is_exactly_the_documented_files(bios_dir):
    assert files_of(bios_dir) == LAYOUT


def test_rerun_is_byte_identical_and_another_seed_differs(bios_dir, tmp_path):
    again = tmp_path / "again"
    assert run_generate("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--out", str(again)).returncode == 0
    match, mismatch, errors = filecmp.cmpfiles(bios_dir, again, LAYOUT, shallow=False)
    assert (sorted(match), mismatch, errors) == (LAYOUT, [], [])

    other = tmp_path / "other"
    assert run_generate("--num-people", str(NUM_PEOPLE), "--seed", str(SEED + 1), "--out", str(other)).returncode == 0
    _, mismatch, _ = filecmp.cmpfiles(bios_dir, other, LAYOUT, shallow=False)
    assert set(mismatch) == set(LAYOUT)  # every file, manifest included, depends on the seed


def test_people_have_unique_names_and_valid_attributes(people):
    pools = load_pools()
    assert len(people) == NUM_PEOPLE
    assert [p["id"] for p in people] == list(range(NUM_PEOPLE))
    assert len({p["name"] for p in people}) == NUM_PEOPLE
    for p in people:
        assert p["name"] == f"{p['first_name']} {p['middle_name']} {p['last_name']}"
        assert p["first_name"] in pools.first_names[p["gender"]]
        assert p["middle_name"] in pools.middle_names[p["gender"]]
        assert p["middle_name"] != p["first_name"]
        assert p["last_name"] in pools.last_names
        month, day, year = DATE_RE.match(p["birth_date"]).groups()
        assert 1 <= int(day) <= 28 and 1900 <= int(year) <= 2099
        assert p["birth_city"] in pools.cities
        assert p["university"] in pools.universities
        assert p["major"] in pools.majors
        assert p["company_city"] == pools.companies[p["employer"]]  # the employer's HQ


def test_pools_have_the_bios_sizes():
    assert load_pools().sizes() == {
        "first_names": 400,
        "middle_names": 400,
        "last_names": 1000,
        "birth_city": 200,
        "university": 300,
        "major": 100,
        "employer": 250,
        "company_city": 132,
    }


def test_qa_columns_use_the_standard_questions(people):
    for p in people:
        for field in FIELDS:
            prefix = QA_PREFIX[field]
            assert p[f"{prefix}_q"] == QUESTIONS[field].format(name=p["name"])
            assert p[f"{prefix}_a"] == p[field]


def test_every_answer_occurs_in_every_text_variant(people):
    for p in people:
        texts = [p["bioS"], p["bioS_fullname"], *p["bioS_multi5_permutes"]]
        for field in FIELDS:
            for text in texts:
                assert p[field] in text, (field, text)


def test_full_name_placement(people):
    # Every template mentions the person exactly once.
    for p in people:
        assert p["bioS"].count(p["name"]) == 1
        assert p["bioS_fullname"].count(p["name"]) == len(FIELDS)
        for bio in p["bioS_multi5_permutes"]:
            assert bio.count(p["name"]) == 1


@pytest.mark.parametrize("field", FIELDS)
def test_every_template_names_its_subject_before_the_value(field):
    # A value-first sentence ("It was in {v} that {s} was born") would teach value -> name.
    for template in TEMPLATES[field]:
        assert template.startswith(("{S}", "{P}")), template
        assert template.count("{v}") == 1 and template.index("{v}") > 2, template
        assert not re.search(r"\{s\}", template), template  # the one subject mention opens it


def test_nothing_is_stated_before_the_full_name(people):
    for p in people:
        assert p["bioS"].startswith(p["name"]), p["bioS"]
        for bio in p["bioS_multi5_permutes"]:
            assert bio.startswith(p["name"]), bio


def test_in_bios_fullname_each_value_follows_its_own_sentences_name(people):
    for p in people:
        text = p["bioS_fullname"]
        before, *sentences = text.split(p["name"])
        assert before == "" and len(sentences) == len(FIELDS), text
        for field, sentence in zip(FIELDS, sentences):  # bioS_fullname keeps the fixed order
            assert p[field] in sentence, (field, sentence)


def test_multi5_biographies_differ_and_are_interleaved(bios_dir, people):
    owner = {}
    for p in people:
        bios5 = p["bioS_multi5_permutes"]
        assert len(bios5) == 5 and len(set(bios5)) == 5
        for text in bios5:
            owner[text] = p["id"]
    rows = [r["text"] for r in read_jsonl(bios_dir / "train/bioS_multi5_permutes.jsonl")]
    assert Counter(rows) == Counter({t: 1 for t in owner})  # each biography exactly once
    assert all(owner[a] != owner[b] for a, b in zip(rows, rows[1:]))


def test_bios_sentences_follow_the_fixed_order(people):
    for p in people[:50]:
        positions = [p["bioS"].index(p[f]) for f in FIELDS]
        assert positions == sorted(positions)


@pytest.mark.parametrize("field", FIELDS)
def test_every_template_renders_and_is_reachable(field):
    assert len(TEMPLATES[field]) == 50
    name, value = "Ada Jane Lovelace", "VALUE"
    for gender in ("male", "female", None):
        contexts = render.field_contexts({f: value for f in FIELDS}, name, gender)
        for tid in range(50):
            first = render.render_bio(contexts, [field], [tid])
            assert value in first and name in first and "{" not in first
            later = render.render_bio(contexts, ["major", field], [0, tid])
            assert later.count(value) == 2 and later.count(name) == 1 + (gender is None)
    # The sampler the generator uses reaches every template.
    rng = random.Random(0)
    seen = Counter(render.draw_templates(rng, FIELDS)[FIELDS.index(field)] for _ in range(5000))
    assert sorted(seen) == list(range(50))


def test_qa_choices_are_valid_and_fixed(bios_dir, people):
    held = {(p["split"], f): set() for p in people for f in FIELDS}
    for p in people:
        for f in FIELDS:
            held[(p["split"], f)].add(p[f])
    for field in FIELDS:
        rows = read_jsonl(bios_dir / f"qa/{field}.jsonl")
        assert len(rows) == NUM_PEOPLE
        labels = Counter()
        for row, p in zip(rows, people):
            assert row["person_id"] == p["id"] and row["split"] == p["split"] and row["field"] == field
            assert row["id"] == f"{field}-{p['id']}"
            assert row["question"] == p[f"{QA_PREFIX[field]}_q"] and row["answer"] == p[field]
            choices = row["choices"]
            assert len(choices) == 4 and len(set(choices)) == 4
            assert choices[row["label"]] == row["answer"]
            assert set(choices) <= held[(p["split"], field)]  # values of people of the same split
            labels[row["label"]] += 1
        assert set(labels) == {0, 1, 2, 3}  # the answer's position is randomized


def test_splits_are_disjoint_and_qa_train_holds_only_train_people(bios_dir, people):
    splits = Counter(p["split"] for p in people)
    assert splits == {"train": NUM_PEOPLE // 2, "heldout": NUM_PEOPLE // 2}
    train = {p["name"]: p for p in people if p["split"] == "train"}
    expected = Counter(f"Question: {p[QA_PREFIX[f] + '_q']}\nAnswer: {p[f]}" for p in train.values() for f in FIELDS)
    rows = [r["text"] for r in read_jsonl(bios_dir / "train/qa_train.jsonl")]
    assert Counter(rows) == expected


def test_reverse_questions_are_unambiguous(bios_dir, people):
    keys = Counter(tuple(p[f] for f in REVERSE_GIVEN) for p in people)
    rows = read_jsonl(bios_dir / "qa/reverse.jsonl")
    assert len(rows) == sum(1 for k in keys.values() if k == 1)
    names = {s: {r["answer"] for r in rows if r["split"] == s} for s in ("train", "heldout")}
    for row in rows:
        matches = [p for p in people if all(p[f] == row["given"][f] for f in REVERSE_GIVEN)]
        assert len(matches) == 1 and matches[0]["name"] == row["answer"]
        assert row["question"] == f"Who was born on {row['given']['birth_date']} in {row['given']['birth_city']}?"
        assert row["choices"][row["label"]] == row["answer"]
        assert len(set(row["choices"])) == 4 and set(row["choices"]) <= names[row["split"]]


def test_manifest_counts_and_hashes_match_the_files(bios_dir, people):
    manifest = json.loads((bios_dir / "manifest.json").read_text())
    assert manifest["num_people"] == NUM_PEOPLE and manifest["seed"] == SEED
    assert manifest["splits"] == dict(Counter(p["split"] for p in people))
    assert sorted(manifest["files"]) == [f for f in LAYOUT if f != "manifest.json"]
    for rel, info in manifest["files"].items():
        data = (bios_dir / rel).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        rows = [json.loads(line) for line in data.splitlines()]
        assert info["rows"] == len(rows)
        if "by_split" in info:
            split_of = {p["id"]: p["split"] for p in people}
            got = Counter(r.get("split") or split_of.get(r.get("id")) for r in rows)
            if rel.startswith("train/bioS"):
                got = Counter(split_of[i] for i in range(len(rows)))
            elif rel in ("train/qa_train.jsonl", "train/qa_reverse_train.jsonl"):
                got = Counter({"train": len(rows)})
            assert {k: v for k, v in info["by_split"].items() if v} == dict(got)
    assert manifest["files"]["train/bioS_multi5_permutes.jsonl"]["rows"] == 5 * NUM_PEOPLE
    assert manifest["files"]["train/qa_train.jsonl"]["rows"] == 6 * NUM_PEOPLE // 2


def test_variants_option_writes_only_the_chosen_texts(tmp_path):
    out = tmp_path / "d"
    assert run_generate("--num-people", "20", "--variants", "bioS", "--out", str(out)).returncode == 0
    assert [f for f in files_of(out) if f.startswith("train/")] == [
        "train/bioS.jsonl",
        "train/qa_reverse_train.jsonl",
        "train/qa_train.jsonl",
    ]
    person = read_jsonl(out / "people.jsonl")[0]
    assert "bioS" in person and "bioS_fullname" not in person and "bioS_multi5_permutes" not in person


def test_tiny_population_still_gets_four_reverse_options(tmp_path):
    out = tmp_path / "one"
    assert run_generate("--num-people", "1", "--heldout-fraction", "0", "--out", str(out)).returncode == 0
    (row,) = read_jsonl(out / "qa/reverse.jsonl")
    assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == row["answer"]
    for field in FIELDS:  # one person: the other three options are values of nobody
        (row,) = read_jsonl(out / f"qa/{field}.jsonl")
        assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == row["answer"]


# --------------------------------------------------------------------------- bad input


# Every bad argument of the command line is in test_bad_input.py; here, the layout's own rules.


def test_existing_output_needs_overwrite_and_foreign_dirs_are_refused(tmp_path):
    out = tmp_path / "d"
    assert run_generate("--num-people", "10", "--out", str(out)).returncode == 0
    before = (out / "manifest.json").read_bytes()
    proc = run_generate("--num-people", "12", "--out", str(out))
    assert proc.returncode == 2 and "already holds a dataset; pass --overwrite" in proc.stderr
    assert (out / "manifest.json").read_bytes() == before
    proc = run_generate("--num-people", "12", "--out", str(out), "--overwrite")
    assert proc.returncode == 0 and json.loads((out / "manifest.json").read_text())["num_people"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp or old dirs left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = run_generate("--num-people", "10", "--out", str(foreign), "--overwrite")
    assert proc.returncode == 2 and "is not a previous llm-engram/generate_data output" in proc.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_unwritable_output_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_generate("--num-people", "10", "--out", str(blocker / "sub" / "bios"))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "cannot write to" in line and "choose a writable --out" in line


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write(path, rows, chunk=8192):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(path, rows, chunk)

    real_write = write.write_jsonl
    monkeypatch.setattr(write, "write_jsonl", failing_write)
    with pytest.raises(KeyboardInterrupt):
        write.write_dataset(synthesize(10), tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_synthesize_rejects_bad_sizes_in_the_library_too():
    with pytest.raises(DataError, match="positive integer"):
        synthesize(0)
    with pytest.raises(DataError, match="too many for the name pools"):
        synthesize(10**9)


# --------------------------------------------------------------------------- bioS_v1 import


def biosv1_rows(people):
    """Rows in the public bioS_v1 schema: name, texts and QA columns; no splits or choices."""
    keep = ["name", *DEFAULT_VARIANTS, *(f"{QA_PREFIX[f]}_{s}" for f in FIELDS for s in "qa")]
    return [{k: p[k] for k in keep} for p in people]


def test_import_of_a_saved_biosv1_dataset(tmp_path, people):
    import datasets

    rows = biosv1_rows(people[:40])
    src = tmp_path / "bioS_v1"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(src))
    out = tmp_path / "imported"
    proc = run_generate("--source", str(src), "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert files_of(out) == LAYOUT
    got = read_jsonl(out / "people.jsonl")
    assert [g["name"] for g in got] == [r["name"] for r in rows]
    for g, p in zip(got, people[:40]):
        assert {f: g[f] for f in FIELDS} == {f: p[f] for f in FIELDS}  # from the *_a columns
        assert g["gender"] == p["gender"]  # inferred from the pronouns of bioS
        assert g["bioS_multi5_permutes"] == p["bioS_multi5_permutes"]
    assert Counter(g["split"] for g in got) == {"train": 20, "heldout": 20}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == str(src) and manifest["import"]["variants_rendered"] == []
    for field in FIELDS:
        for row in read_jsonl(out / f"qa/{field}.jsonl"):
            assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == row["answer"]


def test_import_of_a_jsonl_file_renders_missing_variants(tmp_path, people):
    src = tmp_path / "bios.jsonl"
    rows = [
        {"name": r["name"], "bioS": r["bioS"], **{k: v for k, v in r.items() if k.endswith(("_q", "_a"))}}
        for r in biosv1_rows(people[:10])
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "imported"
    proc = run_generate("--source", str(src), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["import"]["variants_rendered"] == ["bioS_fullname", "bioS_multi5_permutes"]
    for g, p in zip(read_jsonl(out / "people.jsonl"), people):
        assert g["bioS"] == p["bioS"]
        assert g["bioS_fullname"].count(p["name"]) == 6
        assert all(p[f] in bio for bio in g["bioS_multi5_permutes"] for f in FIELDS)


def test_import_of_a_file_outside_the_schema_fails_clearly(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"title": "x"}) + "\n")
    proc = run_generate("--source", str(src), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "has no 'name' column; it must follow the bioS_v1 schema" in proc.stderr


GOOD_ROW = {
    "name": "Ada Jane King",
    "bdate_a": "May 26, 1939",
    "bcity_a": "Irving, TX",
    "university_a": "Rice University",
    "major_a": "Physics",
    "employer_a": "Cigna",
    "company_city_a": "Northfield Township, Cook County, Illinois",
}


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("bdate_a", "February 31, 1990", "not a calendar date written as 'May 26, 1939'"),
        ("bdate_a", "sometime in spring", "not a calendar date written as 'May 26, 1939'"),
        ("bdate_a", "1939-05-26", "not a calendar date written as 'May 26, 1939'"),
        ("bdate_a", "May 06, 1939", "not a calendar date written as 'May 26, 1939'"),
        ("bcity_a", "Irving", "not a city written as 'Irving, TX'"),
        ("bcity_a", "Irving, Texas", "not a city written as 'Irving, TX'"),
        ("company_city_a", "Irving", "not a city written as 'Irving, Texas'"),
    ],
)
def test_imported_values_are_checked_against_their_fields_format(tmp_path, column, value, expected):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps({**GOOD_ROW, "name": "Bo Li Chan", column: value}) + "\n")
    proc = run_generate("--source", str(src), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"row 1 ('Bo Li Chan'): column '{column}' has {value!r}, {expected}" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_an_import_in_the_bios_v1_formats_passes(tmp_path):
    src = tmp_path / "rows.jsonl"
    rows = [
        GOOD_ROW,
        {**GOOD_ROW, "name": "Bo Li Chan", "bdate_a": "February 29, 2000", "company_city_a": "Washington, D.C."},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_generate("--source", str(src), "--out", str(tmp_path / "o"), "--heldout-fraction", "0.5")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("fraction, empty", [("0.999", "train"), ("0", "heldout")])
def test_an_empty_split_is_warned_about_in_one_line(tmp_path, fraction, empty):
    proc = run_generate("--num-people", "60", "--heldout-fraction", fraction, "--out", str(tmp_path / "o"))
    assert proc.returncode == 0
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line.startswith(f"generate_data.py: warning: no {empty} people of 60, so bios_qa")
        and "have no questions" in line
    )
    assert ("bios_qa_heldout" in line) == (empty == "heldout")


# -- the paper's ablation variants, gender drawn on its own, the authors' field lists

ABLATION = ("bioS_single_permute1", "bioS_single_permute5", "bioS_multi5", "bioS_multi5_permutes_fullname")


@pytest.fixture(scope="module")
def ablation(bios_dir, tmp_path_factory) -> Path:
    """The suite's population with every variant: the same people, seed and size."""
    out = tmp_path_factory.mktemp("ablation") / "data"
    args = ("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--variants", ",".join(VARIANTS), "--out", str(out))
    assert run_generate(*args).returncode == 0
    return out


def in_order(text: str, values: list[str]) -> bool:
    """The values occur in ``text`` one after another, in this order."""
    at = 0
    for v in values:
        at = text.find(v, at)
        if at < 0:
            return False
        at += len(v)
    return True


def test_asking_for_the_ablation_variants_leaves_the_other_texts_as_they_were(bios_dir, ablation):
    assert files_of(ablation) == sorted([*LAYOUT, *(f"train/{v}.jsonl" for v in ABLATION)])
    same = [f for f in LAYOUT if f not in ("manifest.json", "people.jsonl")]
    match, mismatch, errors = filecmp.cmpfiles(bios_dir, ablation, same, shallow=False)
    assert (sorted(match), mismatch, errors) == (sorted(same), [], [])
    rows = [{k: v for k, v in p.items() if k not in ABLATION} for p in read_jsonl(ablation / "people.jsonl")]
    assert rows == read_jsonl(bios_dir / "people.jsonl")


def test_each_ablation_variant_has_its_augmentations_and_only_those(ablation):
    people = read_jsonl(ablation / "people.jsonl")
    orders = Counter()
    for p in people:
        values = [p[f] for f in FIELDS]
        one = p["bioS_single_permute1"]  # one biography, its own order, the name once at the start
        assert isinstance(one, str) and one.startswith(p["name"]) and one.count(p["name"]) == 1
        assert all(v in one for v in values)
        orders[tuple(sorted(FIELDS, key=lambda f: one.index(" " + p[f])))] += 1
        five = p["bioS_single_permute5"]  # one biography's sentences in five different orders
        assert len(five) == 5 and len({tuple(sorted(FIELDS, key=lambda f: b.index(" " + p[f]))) for b in five}) == 5
        # The same sentences: past the first (which names the person), the words are the same
        # multiset in each; one template per field, so the sorted later sentences match where
        # the same field stands first.
        assert all(b.startswith(p["name"]) and b.count(p["name"]) == 1 and all(v in b for v in values) for b in five)
        by_first = {}
        for b in five:
            # The value stated first (of two starting together, e.g. "Corning" in "Corning, NY", the longer)
            first = min(FIELDS, key=lambda f: (b.index(" " + p[f]), -len(p[f])))
            rest = b[b.index(". ", b.index(p[first]) + len(p[first])) + 2 :]  # past the first sentence
            by_first.setdefault(first, set()).add(tuple(sorted(x.rstrip(".") for x in rest.split(". "))))
        assert all(len(s) == 1 for s in by_first.values()), by_first
        multi = p["bioS_multi5"]  # five reworded biographies, all in the fixed order
        assert len(multi) == 5 and len(set(multi)) == 5
        for bio in multi:
            assert bio.startswith(p["name"]) and bio.count(p["name"]) == 1 and in_order(bio, values), bio
        full = p["bioS_multi5_permutes_fullname"]  # five, each shuffled, the full name in every sentence
        assert len(full) == 5 and len(set(full)) == 5
        assert all(bio.count(p["name"]) == len(FIELDS) and bio.startswith(p["name"]) for bio in full)
        assert not all(in_order(bio, values) for bio in full)  # 5 of 720 orders: all fixed is ~1e-14
    assert orders[FIELDS] < len(people) / 10 and len(orders) > len(people) / 2  # shuffled: 1/720 each
    rows = [r["text"] for r in read_jsonl(ablation / "train/bioS_multi5.jsonl")]
    assert sorted(rows) == sorted(b for p in people for b in p["bioS_multi5"])  # each once, interleaved


def test_the_old_name_of_single_permute1_still_asks_for_it_and_gives_the_same_texts(ablation, tmp_path):
    """Data version 2.6 renamed bioS_permute to the paper's single + permute1: the old name is an
    alias, and its texts are those that name gave before (its own seeded stream kept)."""
    out = tmp_path / "old"
    args = ("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--variants", "bioS_permute", "--out", str(out))
    assert run_generate(*args).returncode == 0
    assert filecmp.cmp(out / "train/bioS_single_permute1.jsonl", ablation / "train/bioS_single_permute1.jsonl", False)
    assert json.loads((out / "manifest.json").read_text())["variants"] == ["bioS_single_permute1"]


def test_gender_independent_of_the_name_draws_pronouns_on_their_own(tmp_path):
    from engram_data.render import PRONOUNS

    assert run_generate("--num-people", "400", "--out", str(tmp_path / "g"), "--gender", "independent").returncode == 0
    people = read_jsonl(tmp_path / "g/people.jsonl")
    pools = load_pools()
    by_name = {n: g for g, names in pools.first_names.items() for n in names}
    crossed = sum(by_name[p["first_name"]] != p["gender"] for p in people)
    assert 0.4 < crossed / len(people) < 0.6, crossed  # a name's usual gender says nothing: half cross
    for p in people:
        assert p["bioS"].split(". ")[1].startswith((PRONOUNS[p["gender"]]["S"], PRONOUNS[p["gender"]]["P"]))
    assert json.loads((tmp_path / "g/manifest.json").read_text())["args"]["gender"] == "independent"


def write_author_fields(folder: Path, companies: list[str] | None = None) -> None:
    """A small folder in the layout of PhysicsLM4's Capo-bioS-bioR/fields/."""
    folder.mkdir()
    lists = {
        "first_name": ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay"],
        "middle_name": ["Gil", "Hal", "Ivy", "Jo", "Kai", "Lee"],
        "last_name": ["Moss", "Nash", "Orr", "Park", "Quinn", "Reyes", "Shaw", "Todd"],
        "city": ["Austin, TX", "Boise, ID", "Camden, NJ", "Dayton, OH", "Erie, PA"],
        "university": ["North College", "South College", "East College", "West College"],
        "field": ["Botany", "Chemistry", "Dance", "Economics"],
        "company": companies or ["Acme; Akron, OH", "Bolt Inc.; Boise, ID", "Cog; Camden, NJ", "Dyna; Dayton, OH"],
        "job": ["Teacher"],  # in the authors' folder, unused by bioS
    }
    for name, values in lists.items():
        (folder / f"{name}.txt").write_text("\n".join(values) + "\n")


def test_fields_dir_draws_every_value_from_the_authors_lists(tmp_path):
    write_author_fields(tmp_path / "fields")
    out = tmp_path / "data"
    assert (
        run_generate("--num-people", "40", "--fields-dir", str(tmp_path / "fields"), "--out", str(out)).returncode == 0
    )
    people = read_jsonl(out / "people.jsonl")
    text = {n: (tmp_path / "fields" / f"{n}.txt").read_text().split("\n") for n in ("first_name", "city", "field")}
    hq = {"Acme": "Akron, OH", "Bolt Inc.": "Boise, ID", "Cog": "Camden, NJ", "Dyna": "Dayton, OH"}
    for p in people:
        assert p["first_name"] in text["first_name"] and p["birth_city"] in text["city"] and p["major"] in text["field"]
        assert p["company_city"] == hq[p["employer"]]
    assert {p["gender"] for p in people} == {"male", "female"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pool_sizes"]["first_names"] == 6 and manifest["pool_sizes"]["employer"] == 4


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--fields-dir", "{tmp}/none"), "--fields-dir {tmp}/none is not a folder"),
        (("--fields-dir", "{tmp}/bad"), "company.txt line 2 is 'Bolt Inc.'; write 'Company; City, ST'"),
        (("--fields-dir", "{tmp}/bad", "--gender", "by-name"), "--fields-dir lists have no gender"),
        (("--gender", "independent", "--source", "{tmp}/x.jsonl"), "--gender applies to synthesized people"),
    ],
)
def test_fields_dir_and_gender_refuse_bad_input_in_one_line(tmp_path, args, error):
    write_author_fields(tmp_path / "bad", ["Acme; Akron, OH", "Bolt Inc.", "Cog; Camden, NJ", "Dyna; Dayton, OH"])
    args = [a.format(tmp=tmp_path) for a in args]
    proc = run_generate("--num-people", "10", "--out", str(tmp_path / "out"), *args)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert error.format(tmp=tmp_path) in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_make_data_variants_all_names_every_variant():
    from helpers.common import REPO

    line = next(x for x in (REPO / "Makefile").read_text().splitlines() if x.startswith("ALL_VARIANTS :="))
    assert line.split(":=")[1].strip() == ",".join(VARIANTS)


def test_every_file_is_written_the_same_without_orjson(bios_dir):
    """A locked-down GPU image has no orjson: the standard library writes the very same bytes."""
    import orjson

    from engram_data.contract import stdlib_line

    for path in sorted(bios_dir.rglob("*.jsonl")):
        for line in path.read_bytes().splitlines(keepends=True):
            row = orjson.loads(line)
            assert stdlib_line(row) == line, path.name
