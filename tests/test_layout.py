"""The results layout: run folders and their parse are inverse, and a stray path is named."""

import pytest

from rewarddiff import UserError, layout


def test_run_dir_and_parse_are_inverse(tmp_path):
    results = tmp_path / "my results;x"
    folder = layout.run_dir(results, "dna", "hepg2", "rgdm", 3)
    assert folder == results / "dna" / "campaigns" / "hepg2" / "rgdm" / "seed3"
    assert layout.parse_run_file(folder / "metrics.json") == {
        "domain": "dna", "campaign": "hepg2", "method": "rgdm", "seed": 3}  # fmt: skip
    assert layout.reward_dir(results, "dna", "eval") == results / "dna" / "rewards" / "eval"
    assert layout.pretrained_dir(results, "dna").parent == layout.data_dir(results, "dna").parent


@pytest.mark.parametrize("path", ["metrics.json", "r/dna/runs/c/m/seed0/metrics.json",
                                  "r/dna/campaigns/c/m/seedX/metrics.json"])  # fmt: skip
def test_a_file_outside_a_run_folder_is_named(path):
    with pytest.raises(UserError, match=f"{path}: not a file of a campaign run"):
        layout.parse_run_file(path)
