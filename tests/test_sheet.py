"""Campaign sheets: every bad row is named by file, line and column; plans list every job."""

from pathlib import Path

import pytest
from test_cli import assert_one_line_error, cli

from rewarddiff import UserError
from rewarddiff.sheet import campaign_runs, plan, read_sheet

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("campaign\tdomain\tobjective\tdirection\tmethod\tseeds\tn_samples\toracle_budget\t"
          "eval_oracles\tenabled")  # fmt: skip
OBJECTIVES = {
    "gc": {"domain": "dna", "reward": [{"oracle": "gc_content", "weight": 1.0}]},
    "amp": {"domain": "protein", "reward": [{"oracle": "amp_logodds", "weight": 1.0}]},
}
GOOD = [
    "c1\tdna\tgc\tmaximize\tbest_of_n\t2\t8\t16\tgc_content,jaspar_motif:MA0114\ttrue",
    "c1\tdna\tgc\tmaximize\trgdm\t2\t8\t16\tgc_content\ttrue",
    "c2\tprotein\tamp\tmaximize\tddpo\t1\t8\t16\tcharge,amp_prob\ttrue",
    "c3\tdna\tgc\tmaximize\tdraft\t1\t8\t16\tno_such_oracle\tfalse",  # disabled: not deep-checked
]


def sheet(tmp_path, rows, comment=True):
    path = tmp_path / "campaigns.tsv"
    lines = ["# a comment line", HEADER] if comment else [HEADER]
    path.write_text("\n".join(lines + rows) + "\n")
    return path


def test_good_sheet_expands_to_shared_stages_runs_and_baselines(tmp_path):
    rows = read_sheet(sheet(tmp_path, GOOD), OBJECTIVES)
    assert rows["line"].tolist() == [3, 4, 5]  # file lines, after the comment and header
    assert len(campaign_runs(rows)) == 2 + 2 + 1 + 2 + 1  # runs, then baselines per campaign
    jobs = plan(rows)
    counts = jobs["stage"].value_counts().to_dict()
    assert counts == {"prepare_data": 2, "train_reward": 4, "pretrain": 2, "finetune": 5,
                      "sample": 8, "score": 8, "report": 1}  # fmt: skip
    assert jobs["stage"].iloc[0] == "prepare_data" and jobs["stage"].iloc[-1] == "report"


@pytest.mark.parametrize(
    "row, where",
    [
        (
            "c9\tdnaa\tgc\tmaximize\tseiko\t1\t8\t16\tgc_content\ttrue",
            "column domain: unknown domain",
        ),
        ("c1\tdna\tgc\tmaximize\trlhf\t1\t8\t16\tgc_content\ttrue", "column method: 'rlhf'"),
        ("c1\tdna\tgc\tsideways\trgdm\t1\t8\t16\tgc_content\ttrue", "column direction:"),
        ("c1\tdna\tgc\tmaximize\trgdm\tzero\t8\t16\tgc_content\ttrue", "column seeds:"),
        ("c9\tdna\tgcx\tmaximize\tseiko\t1\t8\t16\tgc_content\ttrue", "column objective: 'gcx'"),
        ("c9\tdna\tamp\tmaximize\tseiko\t1\t8\t16\tgc_content\ttrue", "is for domain 'protein'"),
        (
            "c9\tdna\tgc\tmaximize\tseiko\t1\t8\t16\tgc_content,qed\ttrue",
            "column eval_oracles: unknown oracle 'qed' for domain 'dna'",
        ),
        (
            "c1\tdna\tgc\tmaximize\tbest_of_n\t1\t8\t16\tgc_content\ttrue",
            "column method: campaign 'c1' lists method 'best_of_n' twice",
        ),
        (
            "c1\tdna\tgc\tminimize\tdraft\t1\t8\t16\tgc_content\ttrue",
            "column direction: campaign 'c1' has direction 'maximize' on line 3",
        ),
    ],
)
def test_bad_rows_are_named_by_line_and_column(tmp_path, row, where):
    path = sheet(tmp_path, GOOD[:2] + [row])
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES)
    assert str(err.value).startswith(f"{path}:5: ") and where in str(err.value), str(err.value)


def test_objective_oracles_are_checked_and_columns_required(tmp_path):
    bad = {"gc": {"domain": "dna", "reward": [{"oracle": "gc_contnt", "weight": 1.0}]}}
    with pytest.raises(UserError, match=r":3: column objective: unknown oracle 'gc_contnt'"):
        read_sheet(sheet(tmp_path, GOOD[:1]), bad)
    (tmp_path / "short.tsv").write_text("campaign\tdomain\nc\tdna\n")
    with pytest.raises(UserError, match="missing column.*objective"):
        read_sheet(tmp_path / "short.tsv", OBJECTIVES)


def test_cli_plan_prints_the_jobs_and_rejects_bad_sheets(tmp_path):
    result = cli("campaign", "plan", str(ROOT / "config/demo/campaigns.tsv"),
                 "--config", str(ROOT / "config/demo/config.yaml"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "32 enabled rows, 173 jobs" in first and "48 finetune" in first
    assert "results/shape/campaigns/tall_chairs/seiko/seed0" in result.stdout
    bad = sheet(tmp_path, ["c1\tdna\thepg2_specificity\tmaximize\trgdm\t1\t8\t16\tnope\ttrue"])
    result = cli("campaign", "plan", str(bad), "--config", str(ROOT / "config/demo/config.yaml"))
    assert_one_line_error(result, f"{bad}:3: column eval_oracles: unknown oracle 'nope'")


def test_full_scale_example_sheet_is_valid_and_covers_every_domain():
    from rewarddiff.config import load_config

    config = load_config(ROOT / "config/config.yaml")
    rows = read_sheet(ROOT / "config/campaigns.tsv", config["objectives"])
    assert len(rows) >= 12 and set(rows["domain"]) == {"dna", "protein", "molecule", "shape"}
    for domain, methods in rows.groupby("domain")["method"]:  # every method has settings
        assert set(methods) <= set(config["domains"][domain]["finetune"]), domain
