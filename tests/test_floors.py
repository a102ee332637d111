"""make floors: a model's scores before fine-tuning, each field judged against chance with
lm-eval's standard error; company_city reported apart (a pretrained model can infer it)."""

from __future__ import annotations

import pytest

from engram_data.contract import FIELDS
from engram_run.studies import floors


@pytest.mark.parametrize(
    ("acc", "stderr", "chance", "z", "said"),
    [
        (0.25, 0.02, 0.25, 0.0, "at chance"),
        (0.29, 0.02, 0.25, 2.0, "at chance"),  # 2 standard errors: still chance
        (0.30, 0.02, 0.25, 2.5, "above chance"),
        (0.19, 0.02, 0.25, -3.0, "below chance"),
        (0.0, 0.0, 0.0, None, "at chance"),  # exact match 0 of N: no spread, exactly the floor
        (0.01, 0.0, 0.0, None, "above chance"),
    ],
)
def test_a_field_is_at_chance_within_two_standard_errors(acc, stderr, chance, z, said):
    got_z, got = floors.verdict(acc, stderr, chance)
    assert got == said and (got_z is None if z is None else got_z == pytest.approx(z))


def lm_eval_file(per_field: dict[str, float], stderr: float = 0.02) -> dict:
    """An lm-eval result file of bios_qa: one subtask per field and the group."""
    results = {f"bios_qa_{f}": {"acc,none": a, "acc_stderr,none": stderr} for f, a in per_field.items()}
    counts = {f"bios_qa_{f}": {"original": 100, "effective": 100} for f in per_field}
    return {"results": results, "n-samples": counts}


def test_rows_read_each_fields_subtask_with_its_count():
    per_field = dict.fromkeys(FIELDS, 0.25) | {"company_city": 0.40}
    rows = floors.rows_of(lm_eval_file(per_field), "four-option")
    assert list(rows) == list(FIELDS)
    assert rows["company_city"] == {
        "acc": 0.40,
        "stderr": 0.02,
        "n": 100,
        "chance": 0.25,
        "z": pytest.approx(7.5),
        "verdict": "above chance",
    }
    assert {rows[f]["verdict"] for f in FIELDS if f != "company_city"} == {"at chance"}


def test_the_table_puts_company_city_apart_and_the_reverse_task_in_one_row():
    table = {
        "four-option": floors.rows_of(lm_eval_file(dict.fromkeys(FIELDS, 0.25)), "four-option"),
        "reverse": {"all": {"acc": 0.3, "stderr": 0.03, "n": 100, "chance": 0.25, "z": 1.7, "verdict": "at chance"}},
    }
    md = floors.markdown(table, "models/smollm2-135m", 1200).splitlines()
    body = [line for line in md if line.startswith("| ") and not line.startswith(("| field", "| ---"))]
    assert [line.split(" | ")[0] for line in body] == [
        "| birth_date",
        "| birth_city",
        "| university",
        "| major",
        "| employer",
        "| company_city (apart: inferable)",
        "| all",
    ]
    assert body[-1] == "| all |  | 0.300 ± 0.030 (at chance) |"


def test_an_unknown_task_or_a_missing_model_is_one_line(tmp_path):
    from engram_run.runs.recipes import RunError

    with pytest.raises(RunError, match="unknown task nope; choose from four-option, letters, generative, reverse"):
        floors.floors(floors.FloorsSettings(tasks=("nope",)))
    with pytest.raises(RunError, match="is not a model folder; run `make pretrained`"):
        floors.floors(floors.FloorsSettings(model=tmp_path / "none"))
