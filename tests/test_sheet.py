"""Campaign sheets: every bad row is named by file, line and column; plans list every job."""

import subprocess
import sys
from pathlib import Path

import pytest
from badinput import assert_clean_error
from test_cli import assert_one_line_error, cli

from rewarddiff import UserError
from rewarddiff.config import load_config
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
    config = load_config(ROOT / "config/config.yaml")
    rows = read_sheet(ROOT / "config/campaigns.tsv", config["objectives"],
                      domains=config["domains"])  # fmt: skip
    assert len(rows) >= 12 and set(rows["domain"]) == {"dna", "protein", "molecule", "shape"}
    for domain, methods in rows.groupby("domain")["method"]:  # every method has settings
        assert set(methods) <= set(config["domains"][domain]["finetune"]), domain


def test_demo_and_test_sheets_pass_the_oracle_checks_against_their_configs():
    for config_path in ("config/demo/config.yaml", ".test/config/config.yaml"):
        config = load_config(ROOT / config_path)
        rows = read_sheet(ROOT / config["campaigns"], config["objectives"],
                          domains=config["domains"])  # fmt: skip
        assert len(rows) == 32, config_path


@pytest.mark.parametrize(
    "lines, message",
    [
        ([GOOD[0] + "\textra"], "3: 11 tab-separated fields, the header (line 2) has 10"),
        ([GOOD[0].rpartition("\t")[0]], "3: 9 tab-separated fields, the header (line 2) has 10"),
        ([GOOD[0], "\t" * 9], "4: a line of tabs only; delete it or fill in a row"),
        ([], "2: no rows after the header"),
        ([GOOD[3]], " every row is disabled (column enabled); nothing to run"),
    ],
)
def test_malformed_sheets_are_named_by_line(tmp_path, lines, message):
    path = sheet(tmp_path, lines)
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES)
    assert str(err.value) == f"{path}:{message}"


COLUMNS = ("campaign, domain, objective, direction, method, seeds, n_samples, oracle_budget, "
           "eval_oracles, enabled")  # fmt: skip


@pytest.mark.parametrize(
    "header, message",
    [
        (HEADER.replace("\tenabled", ""), "2: missing column(s) enabled"),
        (HEADER.replace("seeds", "seed"), "2: unknown column 'seed'; missing column(s) seeds"),
        (HEADER + "\tnotes", "2: unknown column 'notes'"),
        (
            HEADER.replace("domain", "campaign"),
            "2: column 'campaign' twice; missing column(s) domain",
        ),
    ],
)
def test_header_needs_every_column_once_and_no_other(tmp_path, header, message):
    path = tmp_path / "campaigns.tsv"
    path.write_text(f"# sheet\n{header}\n{GOOD[0]}\n")
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES)
    assert str(err.value) == f"{path}:{message} (columns: {COLUMNS})"
    (tmp_path / "empty.tsv").write_text("# only a comment\n\n")
    with pytest.raises(UserError, match=r"empty.tsv: empty sheet \(no header line\)$"):
        read_sheet(tmp_path / "empty.tsv", OBJECTIVES)


@pytest.mark.parametrize(
    "cells, message",
    [
        ({5: "2.5"}, "column seeds: '2.5' is not a positive integer"),
        ({5: ""}, "column seeds: empty; expected a positive integer"),
        ({6: "0"}, "column n_samples: '0' is not a positive integer"),
        ({7: "-5"}, "column oracle_budget: '-5' is not a positive integer"),
        ({7: "1e4"}, "column oracle_budget: '1e4' is not a positive integer"),
        (
            {4: "RGDM"},
            "column method: 'RGDM' is not one of best_of_n, ctrl, ddpo, draft, guidance, rcgdm, "
            "rgdm, seiko",
        ),
        (
            {9: "maybe"},
            "column enabled: 'maybe' is not one of true, false, True, False, yes, no, 1, 0",
        ),
        (
            {0: "my campaign"},
            "column campaign: 'my campaign' is not a name of letters, digits, '_', '.' and '-'",
        ),
        (
            {8: "gc_content, jaspar_motif:MA0114"},
            "column eval_oracles: 'gc_content, jaspar_motif:MA0114' is not oracle specs "
            "separated by commas, without spaces",
        ),
        (
            {8: "gc_content,"},
            "column eval_oracles: 'gc_content,' is not oracle specs separated by commas, "
            "without spaces",
        ),
        (
            {6: "32", 7: "16"},
            "column n_samples: best_of_n keeps n_samples of oracle_budget designs; 32 > 16",
        ),
    ],
)
def test_bad_cells_say_what_was_expected(tmp_path, cells, message):
    fields = GOOD[0].split("\t")
    for index, value in cells.items():
        fields[index] = value
    path = sheet(tmp_path, ["\t".join(fields)])
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES)
    assert str(err.value) == f"{path}:3: {message}"


def test_bom_crlf_blank_lines_and_padded_cells_read_as_written(tmp_path):
    plain = read_sheet(sheet(tmp_path, GOOD), OBJECTIVES)
    path = tmp_path / "windows.tsv"
    rows = [" " + GOOD[0].replace("\t", " \t"), "", "   ", *GOOD[1:]]
    path.write_bytes("\ufeff# made on Windows\r\n{}\r\n{}\r\n".format(
        HEADER, "\r\n".join(rows)).encode())  # fmt: skip
    windows = read_sheet(path, OBJECTIVES)
    assert windows["line"].tolist() == [3, 6, 7]
    assert windows.drop(columns="line").equals(plain.drop(columns="line"))


DNA_GC = "c9\tdna\tgc\tmaximize\tseiko\t1\t8\t16\t{}\ttrue"


@pytest.mark.parametrize(
    "oracles, message",
    [
        (
            "celltype_prob:Liver",
            "oracle celltype_prob: unknown class 'Liver' (known: GM12878, hESCT0, K562, HepG2)",
        ),
        (
            "celltype_logodds",
            "oracle celltype_logodds: needs a class (known: GM12878, hESCT0, K562, HepG2)",
        ),
        (
            "gc_content,jaspar_motif:NOPE",
            "oracle jaspar_motif: unknown JASPAR matrix id 'NOPE' in JASPAR2024",
        ),
        ("gc_content:7", "oracle gc_content takes no argument (got gc_content:7)"),
    ],
)
def test_oracle_arguments_are_checked_before_any_training(tmp_path, oracles, message):
    path = sheet(tmp_path, [DNA_GC.format(oracles)])
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES)
    assert str(err.value) == f"{path}:3: column eval_oracles: {message}"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("amp_windows:charge=9..2", "property window 'charge=9..2': need LOW <= HIGH, got 9..2"),
        (
            "amp_windows:charge=2-9",
            "property window 'charge=2-9': expected NAME=LOW..HIGH with NAME one of length, "
            "charge, gravy, instability, pi, aromaticity, helix_fraction, hydrophobic_moment",
        ),
        ("amp_windows:charge=a..9", "property window 'charge=a..9': bounds must be numbers"),
        (
            "amp_windows:charge=..",
            "property window 'charge=..': give a low bound, a high bound or both",
        ),
        (
            "amp_windows:charge=1..2,charge=3..4",
            "property window 'charge=3..4': a second window for charge",
        ),
    ],
)
def test_objective_window_arguments_are_checked(tmp_path, spec, message):
    objectives = {"amp": {"domain": "protein", "reward": [{"oracle": spec}]}}
    path = sheet(tmp_path, ["c2\tprotein\tamp\tmaximize\tddpo\t1\t8\t16\tcharge\ttrue"])
    with pytest.raises(UserError) as err:
        read_sheet(path, objectives)
    assert str(err.value) == f"{path}:3: column objective: oracle amp_windows: {message}"


def test_learned_oracles_check_the_classes_of_the_configured_data(tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\ns1\tliver\ns2\tbrain\n")
    domains = {"dna": {"data": {"source": "fasta", "fasta": "x.fasta", "labels": str(labels)}},
               "protein": {}}  # fmt: skip
    assert len(read_sheet(sheet(tmp_path, [DNA_GC.format("celltype_prob:liver")]), OBJECTIVES,
                          domains=domains)) == 1  # fmt: skip
    path = sheet(tmp_path, [DNA_GC.format("celltype_prob:HepG2")])
    with pytest.raises(UserError) as err:
        read_sheet(path, OBJECTIVES, domains=domains)
    assert str(err.value) == (f"{path}:3: column eval_oracles: oracle celltype_prob: unknown "
                              "class 'HepG2' (known: brain, liver)")  # fmt: skip
    with pytest.raises(UserError, match=r":3: column domain: the config has no section domains."):
        read_sheet(path, OBJECTIVES, domains={"protein": {}})


def test_molecule_and_shape_oracles_check_targets_and_families(tmp_path):
    objectives = {"m": {"domain": "molecule", "reward": [{"oracle": "property:gap"}]},
                  "s": {"domain": "shape", "reward": [{"oracle": "height"}]}}  # fmt: skip
    rows = ["m1\tmolecule\tm\tmaximize\trgdm\t1\t8\t16\tproperty:homo\ttrue",
            "s1\tshape\ts\tmaximize\trgdm\t1\t8\t16\tfamily_prob:sofa\ttrue"]  # fmt: skip
    domains = {"molecule": {"reward": {"targets": ["homo", "gap"]}},
               "shape": {"data": {"families": ["chair", "sofa"]}}}  # fmt: skip
    path = sheet(tmp_path, rows)
    with pytest.raises(UserError) as err:
        read_sheet(path, objectives, domains=domains)
    assert str(err.value) == (f"{path}:4: column eval_oracles: oracle family_prob: unknown "
                              "family 'sofa' (known: chair)")  # fmt: skip
    with pytest.raises(UserError) as err:
        read_sheet(path, objectives)  # the default targets: alpha, gap
    assert str(err.value) == (f"{path}:3: column eval_oracles: oracle property: unknown target "
                              "'homo' (known: alpha, gap)")  # fmt: skip


def test_plan_and_snakemake_reject_a_bad_oracle_argument_in_one_line(tmp_path, capsys):
    config = ROOT / ".test/config/config.yaml"
    path = sheet(tmp_path, ["t\tdna\thepg2_specificity\tmaximize\trgdm\t1\t8\t16\t"
                            "celltype_prob:Liver\ttrue"])  # fmt: skip
    message = (f"{path}:3: column eval_oracles: oracle celltype_prob: unknown class 'Liver' "
               "(known: GM12878, hESCT0, K562, HepG2)")  # fmt: skip
    assert_clean_error(capsys, ["campaign", "plan", path, "--config", config],
                       f"rewarddiff campaign: error: {message}", keep=[path])  # fmt: skip
    (tmp_path / "config.yaml").write_text(
        config.read_text().replace("campaigns: .test/config/campaigns.tsv", f"campaigns: {path}")
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
         "--dry-run", "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [message]
