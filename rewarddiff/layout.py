"""The results layout, in one place: where every stage writes below ``results_dir``.

``<results>/<domain>/data``, ``<results>/<domain>/rewards/<copy>``,
``<results>/<domain>/pretrained``, ``<results>/<domain>/campaigns/<campaign>/<method>/seed<s>``
(a campaign's pretrained-model baseline runs under the method folder ``pretrained``) and
``<results>/report``. The Snakemake rules spell the same paths as wildcard patterns.
"""

from __future__ import annotations

from pathlib import Path

from rewarddiff import UserError

BASELINE = "pretrained"  # the method folder of a campaign's pretrained-model baseline


def data_dir(results: str | Path, domain: str) -> Path:
    return Path(results) / domain / "data"


def reward_dir(results: str | Path, domain: str, copy: str | None = None) -> Path:
    """The reward models of ``domain`` (both copies), or of one ``copy`` (ft or eval)."""
    folder = Path(results) / domain / "rewards"
    return folder / copy if copy else folder


def pretrained_dir(results: str | Path, domain: str) -> Path:
    return Path(results) / domain / "pretrained"


def run_dir(results: str | Path, domain: str, campaign: str, method: str, seed: int) -> Path:
    """One campaign row × seed: the fine-tuned model, its designs, scores and metrics."""
    return Path(results) / domain / "campaigns" / campaign / method / f"seed{seed}"


def report_dir(results: str | Path) -> Path:
    return Path(results) / "report"


def parse_run_file(path: str | Path) -> dict:
    """Inverse of :func:`run_dir` for a file in a run folder
    (``.../<domain>/campaigns/<campaign>/<method>/seed<s>/<file>``): domain, campaign, method,
    seed; a UserError naming ``path`` when it is not one."""
    parts = Path(path).parts
    seed = parts[-2][4:] if len(parts) >= 6 else ""
    if (
        len(parts) < 6
        or parts[-5] != "campaigns"
        or not parts[-2].startswith("seed")
        or not (seed.isdigit())
    ):
        raise UserError(
            f"{path}: not a file of a campaign run "
            f"(<domain>/campaigns/<campaign>/<method>/seed<s>/{Path(path).name})"
        )
    return {"domain": parts[-6], "campaign": parts[-4], "method": parts[-3], "seed": int(seed)}
