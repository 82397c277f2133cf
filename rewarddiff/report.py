"""Campaign report: per-run and per-method tables (CSV + Markdown) and plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rewarddiff import layout  # noqa: E402
from rewarddiff.domain import get_domain  # noqa: E402
from rewarddiff.finetune import METHODS  # noqa: E402
from rewarddiff.io import Manifest, atomic_path, write_text  # noqa: E402

# columns of every method table, in order, with the direction that is better; each domain
# adds its own (``Domain.report_columns``) after these, then the evaluation oracles' means
REWARD_COLUMNS = {
    "reward_eval_mean": "↑",
    "reward_eval_top10": "↑",
    "reward_ft_mean": "↑",
    "target_fraction": "↑",
    "target_prob": "↑",
    "label_accuracy": "↑",
    "label_macro_f1": "↑",
    "loglik_pretrained": "↑",
    "path_kl": "↓",
}
QUALITY_COLUMNS = {
    "validity": "↑",
    "uniqueness": "↑",
    "novelty": "↑",
    "diversity": "↑",
    "memorisation": "↓",
}
BUDGET_COLUMNS = {"oracle_calls": "", "finetune_wall_s": ""}
BEST_PER_CAMPAIGN = 3  # designs per campaign in the summary's best-designs table


def run_designs(domain: str, runs: pd.DataFrame) -> list[tuple[str, object, np.ndarray]]:
    """(method, designs, their ``reward_eval``) of each run, for the domain's renders."""
    dom = get_domain(domain)
    return [
        (r.method, dom.read_designs(Path(r.run_dir) / f"designs{dom.design_suffix}"),
         pd.read_csv(Path(r.run_dir) / "scores.csv")["reward_eval"].to_numpy())
        for r in runs.itertuples()
    ]  # fmt: skip


def load_runs(metrics_paths: list[Path]) -> pd.DataFrame:
    rows = []
    for path in metrics_paths:
        row = layout.parse_run_file(path) | json.loads(Path(path).read_text())
        log = Path(path).parent / "train_log.csv"
        manifest = Path(path).parent / "manifest.json"
        if log.exists():
            rounds = pd.read_csv(log)
            row["oracle_calls"] = int(rounds["oracle_calls"].max())
            # path KL to p_pre of the last round's samples (nats per design)
            row["path_kl"] = float(rounds["path_kl"].iloc[-1])
        else:
            row["oracle_calls"], row["path_kl"] = 0, 0.0  # the pretrained model itself
        if manifest.exists():  # fine-tuned runs: the fine-tuning stage's record
            record = json.loads(manifest.read_text())
            if record.get("stage") == "finetune":
                row["finetune_wall_s"] = record["wall_time_s"]
                row["device"] = record.get("device")
                row["direction"] = record["params"].get("objective", {}).get("direction")
        rows.append(row | {"run_dir": str(Path(path).parent)})
    return pd.DataFrame(rows)


def table_columns(runs: pd.DataFrame) -> dict[str, str]:
    """The generic reward and distance columns, the domains' own, the generic quality and
    budget columns — those present — then the evaluation oracles' means."""
    domain_columns = {}
    for domain in runs["domain"].unique():
        domain_columns |= get_domain(domain).report_columns
    fixed = REWARD_COLUMNS | domain_columns | QUALITY_COLUMNS
    cols = {c: d for c, d in fixed.items() if c in runs}
    oracle_means = [c for c in runs if c.endswith("_mean") and not c.startswith("reward_")]
    cols |= {c: "" for c in sorted(oracle_means) if c not in cols}
    return cols | {c: d for c, d in BUDGET_COLUMNS.items() if c in runs}


def method_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (over seeds) per (domain, campaign, method); pretrained first, then
    the methods in registry order (methods no longer registered last)."""
    cols = list(table_columns(runs))
    grouped = runs.groupby(["domain", "campaign", "method"])
    table = grouped[cols].mean().join(grouped[cols].std(ddof=1).add_suffix("_std"))
    table["seeds"] = grouped.size()
    order = {"pretrained": -1} | {method: k for k, method in enumerate(METHODS)}
    return table.reset_index().sort_values(
        ["domain", "campaign", "method"],
        key=lambda s: s.map(order).fillna(len(order)) if s.name == "method" else s,
    )


def markdown_table(table: pd.DataFrame) -> str:
    """One campaign's rows; columns that no run of it reports are left out."""
    directions = table_columns(table)
    cols = [c for c in directions if table[c].notna().any()]
    header = ["campaign", "method", "seeds"] + [f"{c} {directions[c]}".strip() for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [r["campaign"], r["method"], str(r["seeds"])]
        for c in cols:
            std = r.get(f"{c}_std")
            if pd.isna(r[c]):  # a statistic this method does not report (e.g. label accuracy)
                cells.append("–")
                continue
            cells.append(f"{r[c]:.3g}" + (f" ± {std:.2g}" if pd.notna(std) and std > 0 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_reward_distributions(runs: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, group in runs.groupby("method"):
        values = pd.concat(
            [pd.read_csv(Path(d) / "scores.csv")["reward_eval"] for d in group["run_dir"]]
        ).dropna()
        ax.hist(values, bins=40, alpha=0.5, density=True, label=f"{method} (n={len(values)})")
    ax.set_xlabel("evaluation reward (eval copy)")
    ax.set_ylabel("density")
    ax.legend()
    _save(fig, path)


def plot_reward_vs_distance(runs: pd.DataFrame, path: Path) -> None:
    """The two sides of the trade-off, one point per run: evaluation reward against the
    log-likelihood under p_pre (left) and against the path KL to p_pre (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, group in runs.groupby("method"):
        for ax, column in zip(axes, ("loglik_pretrained", "path_kl")):
            ax.scatter(group[column], group["reward_eval_mean"], label=method, s=40)
    axes[0].set_xlabel("log-likelihood under the pretrained model (nats / design)")
    axes[1].set_xlabel("path KL to the pretrained sampling chain (nats / design)")
    axes[0].set_ylabel("mean evaluation reward")
    axes[1].legend()
    _save(fig, path)


def plot_training_curves(runs: pd.DataFrame, results_dir: Path, path: Path) -> None:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for domain in runs["domain"].unique():
        log = layout.pretrained_dir(results_dir, domain) / "train_log.csv"
        if log.exists():
            curve = pd.read_csv(log)
            ax0.plot(curve["step"], curve["loss"].rolling(5, min_periods=1).mean(), label=domain)
    ax0.set_xlabel("pretraining step")
    ax0.set_ylabel("training loss (nats, per domain's unit)")
    ax0.legend()
    # methods whose log rows are rounds of the objective (not, e.g., log p̂(y|x) or a sweep)
    online = runs[runs["method"].map(lambda m: m in METHODS and METHODS[m].training_curve)]
    for _, run in online.iterrows():
        log = Path(run["run_dir"]) / "train_log.csv"
        if log.exists():
            curve = pd.read_csv(log)
            ax1.plot(
                curve["oracle_calls"],
                curve["reward_mean"],
                marker="o",
                label=f"{run['method']} s{run['seed']}",
            )
    ax1.set_xlabel("fine-tuning oracle calls")
    ax1.set_ylabel("mean fine-tuning reward of the round's samples")
    ax1.legend(fontsize=7)
    _save(fig, path)


def plot_extrapolation(runs: pd.DataFrame, path: Path) -> bool:
    """A sweep against the target value a (in reward standard deviations) — the log rows with
    ``stage`` ``sweep`` and their ``target_z``, which rcgdm writes — of one method's runs:
    achieved fine-tuning reward, log-likelihood under p_pre and, where the domain logs it,
    sample quality (e.g. molecule validity); False when no run has a sweep."""
    sweeps = []
    for _, run in runs.iterrows():
        path_log = Path(run["run_dir"]) / "train_log.csv"
        log = pd.read_csv(path_log) if path_log.exists() else pd.DataFrame()
        if "stage" in log and (log["stage"] == "sweep").any():
            sweeps.append(log[log["stage"] == "sweep"].assign(seed=run["seed"]))
    if not sweeps:
        return False
    columns = {"reward_mean": "mean fine-tuning reward of the samples",
               "loglik_pretrained": "log-likelihood under p_pre (nats / design)"}  # fmt: skip
    columns |= {c: f"{c} of the samples" for c in ("validity", "atom_stability") if c in sweeps[0]}
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4))
    for sweep in sweeps:
        for ax, column in zip(axes, columns):
            ax.plot(
                sweep["target_z"], sweep[column], marker="o", label=f"seed {sweep.seed.iloc[0]}"
            )
    for ax, label in zip(axes, columns.values()):
        ax.set_ylabel(label)
        ax.set_xlabel("target a (reward std above the labelled mean)")
    axes[0].legend()
    _save(fig, path)
    return True


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def reward_model_section(results_dir: Path, domains) -> str:
    lines = []
    for domain in domains:
        for copy in ("ft", "eval"):
            path = layout.reward_dir(results_dir, domain, copy) / "metrics.json"
            if not path.exists():
                continue
            m = json.loads(path.read_text())
            if "test_mae" in m:  # regressors: MAE per target in the field's units
                mae = ", ".join(
                    f"{t} {v:.3g} {m['units'].get(t, '')}".strip() for t, v in m["test_mae"].items()
                )
                score = f"held-out MAE {mae}"
            else:
                score = f"held-out accuracy {m['accuracy']:.3f}"
                if "auroc" in m:  # binary classifiers
                    score += f", AUROC {m['auroc']:.3f}"
            lines.append(
                f"- {domain} `{copy}` copy: {score} on {m['n_test']} test examples "
                f"(trained on {m['n_train']})"
            )
        manifest = layout.pretrained_dir(results_dir, domain) / "manifest.json"
        if manifest.exists():
            m = json.loads(manifest.read_text())
            res = m.get("results", {})
            per_position = res.get("valid_nats_per_position", res.get("valid_nats_per_base"))
            if per_position is not None:  # sequences (older runs wrote nats_per_base)
                elbo = f"{per_position:.4f} nats/position"
            elif "valid_nats_per_point" in res:  # point clouds, normalised coordinates
                elbo = f"{res['valid_nats_per_point']:.3f} nats/point"
            elif "valid_loglik_per_molecule" in res:
                elbo = f"{res['valid_loglik_per_molecule']:.1f} nats/molecule"
            else:  # another domain's figures, as it reported them
                figures = [f"{k} {v:.4g}" for k, v in res.items() if isinstance(v, int | float)]
                elbo = ", ".join(figures) or "not recorded"
            steps = m["params"].get("train", {}).get("steps", "default")
            lines.append(
                f"- {domain} pretrained model: validation ELBO {elbo}, "
                f"{steps} steps in {m['wall_time_s']:.0f} s"
            )
    return "\n".join(lines)


def campaign_settings(group: pd.DataFrame) -> str:
    """One line of what the numbers of a campaign depend on: the compute device(s) and the
    metric settings the runs report as text (e.g. which EMD the shape metrics used)."""
    notes = []
    if "device" in group and group["device"].notna().any():
        notes.append("fine-tuned on " + ", ".join(sorted(group["device"].dropna().unique())))
    for column in group.columns:
        values = group[column].dropna()
        if column in ("domain", "campaign", "method", "run_dir", "device", "direction"):
            continue
        if len(values) and all(isinstance(v, str) for v in values):
            notes.append(f"{column}: {', '.join(sorted(set(values)))}")
    return "; ".join(notes)


def best_designs(group: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` best designs of a campaign over all its runs by the evaluation reward (lowest
    first for ``minimize`` objectives), with every score and the file that holds them."""
    suffix = get_domain(group["domain"].iloc[0]).design_suffix
    directions = group["direction"].dropna() if "direction" in group else pd.Series([])
    ascending = bool(len(directions)) and directions.iloc[0] == "minimize"
    frames = []
    for run in group.itertuples():
        scores = pd.read_csv(Path(run.run_dir) / "scores.csv")
        frames.append(scores.assign(campaign=run.campaign, method=run.method, seed=run.seed,
                                    file=str(Path(run.run_dir) / f"scored{suffix}")))  # fmt: skip
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values("reward_eval", ascending=ascending, na_position="last").head(k)
    first = ["campaign", "method", "seed", "design", "reward_eval", "reward_ft"]
    first = [c for c in first if c in table]
    return table[first + [c for c in table if c not in first]]


def best_designs_markdown(best: pd.DataFrame) -> str:
    """The summary's table of best designs: identifiers, rewards and file; designs shortened."""
    cols = ["campaign", "method", "seed", "design", "reward_eval", "reward_ft", "file"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in best.iterrows():
        design = str(r["design"])
        cells = [str(r["campaign"]), str(r["method"]), str(r["seed"]),
                 f"`{design[:40]}{'…' if len(design) > 40 else ''}`",
                 f"{r['reward_eval']:.4g}", f"{r.get('reward_ft', float('nan')):.4g}",
                 str(r["file"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_report(results_dir: Path, metrics_paths: list[Path], out_dir: Path) -> Path:
    """``summary.md`` (tables, settings, best designs, plots under ``plots/``), ``summary.csv``
    (method × metric, mean and std over seeds), ``runs.csv`` (every run), ``best_designs.csv``
    and ``manifest.json`` in ``out_dir``."""
    manifest = Manifest("report", {"metrics": [str(p) for p in metrics_paths]}, {})
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    plots = out_dir / "plots"
    runs = load_runs(metrics_paths)
    table = method_table(runs)
    with atomic_path(out_dir / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    campaigns = runs.groupby(["domain", "campaign"])
    best = pd.concat([best_designs(g, BEST_PER_CAMPAIGN) for _, g in campaigns], ignore_index=True)
    with atomic_path(out_dir / "best_designs.csv") as tmp:
        best.to_csv(tmp, index=False)
    sections = [
        "# Campaign report",
        "",
        "Evaluation uses the `eval` reward copy (trained on data disjoint from the `ft` copy "
        "that steers fine-tuning) and the analytic oracles. `oracle_calls` counts fine-tuning "
        "reward calls; every method in a campaign has the same budget. Mean ± sample std over "
        "seeds. `path_kl`: KL of the model's sampling chain to p_pre's (nats per design; "
        "best_of_n: the bound log(N/k) of a top-k-of-N selection).",
        "",
        "## Models",
        reward_model_section(results_dir, runs["domain"].unique()),
        "",
        "## Best designs per objective",
        "",
        f"The {BEST_PER_CAMPAIGN} best designs of each campaign by the evaluation reward, over "
        "all methods and seeds (all scores: `best_designs.csv`).",
        "",
        best_designs_markdown(best),
        "",
    ]
    for (domain, campaign), group in campaigns:
        stem = f"{domain}_{campaign}"
        plot_reward_distributions(group, plots / f"{stem}_reward_hist.png")
        plot_reward_vs_distance(group, plots / f"{stem}_reward_vs_loglik.png")
        plot_training_curves(group, results_dir, plots / f"{stem}_training.png")
        sub = table[(table["domain"] == domain) & (table["campaign"] == campaign)]
        pictures = []
        for method, runs_of in group.groupby("method"):
            if plot_extrapolation(runs_of, plots / f"{stem}_{method}_sweep.png"):
                pictures.append(f"![{method}: reward and likelihood vs target]"
                                f"(plots/{stem}_{method}_sweep.png)")  # fmt: skip
        # molecule grids, sequence logos, point clouds of the first seed's runs
        if get_domain(domain).render_designs(
            run_designs(domain, group[group["seed"] == group["seed"].min()]),
            plots / f"{stem}_designs.png",
        ):
            pictures.append(f"![top designs per method](plots/{stem}_designs.png)")
        settings = campaign_settings(group)
        sections += [
            f"## {domain} / {campaign}",
            "",
            *([f"Settings: {settings}.", ""] if settings else []),
            markdown_table(sub),
            "",
            f"![reward distributions](plots/{stem}_reward_hist.png)",
            f"![reward vs log-likelihood and path KL](plots/{stem}_reward_vs_loglik.png)",
            f"![training curves](plots/{stem}_training.png)",
            *pictures,
            "",
        ]
    write_text(out_dir / "summary.md", "\n".join(sections) + "\n")
    manifest.write(out_dir / "manifest.json", campaigns=len(campaigns), runs=len(runs))
    return out_dir / "summary.md"
