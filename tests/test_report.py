"""Report building blocks: domain columns, best designs (direction-aware), sequence logos."""

import json

import numpy as np
import pandas as pd
from PIL import Image

from rewarddiff.report import (
    best_designs,
    campaign_settings,
    method_table,
    run_designs,
    table_columns,
)
from seqgen.dna import DNA
from seqgen.protein import PROTEIN


def fake_run(root, domain, method, seed, designs, rewards, direction="maximize"):
    """A scored run directory as the pipeline leaves it (designs, scores, fine-tune manifest)."""
    run = root / domain / "campaigns" / "c" / method / f"seed{seed}"
    dom = {"dna": DNA, "protein": PROTEIN}[domain]
    dom.write_designs(run / f"designs{dom.design_suffix}", designs, {})
    pd.DataFrame({"design": designs, "reward_eval": rewards, "reward_ft": rewards}).to_csv(
        run / "scores.csv", index=False
    )
    manifest = {"stage": "finetune", "params": {"objective": {"direction": direction}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return {"domain": domain, "campaign": "c", "method": method, "seed": seed,
            "run_dir": str(run), "direction": direction}  # fmt: skip


def test_table_columns_add_the_domains_own_after_the_generic_ones():
    runs = pd.DataFrame({"domain": ["protein"], "campaign": ["c"], "method": ["rgdm"],
                         "seed": [0], "reward_eval_mean": [1.0], "composition_jsd": [0.1],
                         "charge_mean": [3.0], "oracle_calls": [8],
                         "diversity": [0.5]})  # fmt: skip
    cols = list(table_columns(runs))
    assert cols == ["reward_eval_mean", "composition_jsd", "diversity", "charge_mean",
                    "oracle_calls"]  # fmt: skip
    assert table_columns(runs)["composition_jsd"] == "↓"
    two_seeds = pd.concat([runs, runs.assign(seed=1, reward_eval_mean=3.0)])
    table = method_table(two_seeds)
    assert table["reward_eval_mean_std"].iloc[0] == np.std([1.0, 3.0], ddof=1)  # sample std


def test_best_designs_follow_the_objective_direction(tmp_path):
    runs = pd.DataFrame([
        fake_run(tmp_path, "dna", "rgdm", 0, ["ACGT" * 5, "TTTT" * 5], [0.5, 2.0], "minimize"),
        fake_run(tmp_path, "dna", "draft", 0, ["GGGG" * 5], [-1.0], "minimize"),
    ])  # fmt: skip
    best = best_designs(runs, 2)
    assert best["reward_eval"].tolist() == [-1.0, 0.5]  # lowest first when minimising
    assert best["method"].tolist() == ["draft", "rgdm"]
    assert best["file"].iloc[0].endswith("draft/seed0/scored.fasta")
    assert "fine-tuned on" not in campaign_settings(runs)  # no device recorded here
    assert campaign_settings(runs.assign(emd_method="exact")) == "emd_method: exact"


def test_sequence_logos_render_one_row_per_run(tmp_path):
    rng = np.random.default_rng(0)
    dna = [fake_run(tmp_path, "dna", m, 0, ["".join(rng.choice(list("ACGT"), 200))
                                             for _ in range(8)], rng.normal(size=8))
           for m in ("pretrained", "rgdm")]  # fmt: skip
    DNA.render_designs(run_designs("dna", pd.DataFrame(dna)), tmp_path / "d.png")
    peptides = ["GIGKFLHSAKKFGKAFVGEIMNS", "KLAKLAKKLAKLAK", ""]  # an empty design is allowed
    pep = fake_run(tmp_path, "protein", "rgdm", 0, peptides, [1.0, 2.0, np.nan])
    PROTEIN.render_designs(run_designs("protein", pd.DataFrame([pep])), tmp_path / "p.png")
    (w, h), (_, h1) = Image.open(tmp_path / "d.png").size, Image.open(tmp_path / "p.png").size
    assert w > 500 and h > h1  # 60 positions wide; two rows against one
