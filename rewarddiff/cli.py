"""``rewarddiff`` command line: one sub-command per pipeline stage, explicit paths everywhere.

Stage parameters come from ``--config FILE`` (section ``domains.<domain>.<stage>``) or, as the
Snakemake rules do, from ``--params JSON``. Bad input exits with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rewarddiff import UserError, campaign


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"invalid JSON: {err.msg}") from None


def _json_object(text: str) -> dict:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object {{...}} is needed, not {text!r}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``rewarddiff <stage>: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rewarddiff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def stage(name, help_, section=None):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--domain", required=True, help="dna, molecule or a registered domain")
        if section:
            p.add_argument("--config", type=Path, help="pipeline config YAML")
            p.add_argument(
                "--params", type=_json_object, help="stage parameters as JSON (overrides)"
            )
            p.set_defaults(section=section)
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        return p

    p = stage("prepare", "prepare datasets", "data")
    p.add_argument("--out-dir", type=Path, required=True)

    p = stage("train-reward", "train the ft/eval reward-model copies", "reward")
    p.add_argument(
        "--copy",
        choices=["ft", "eval"],
        action="append",
        help="train only this copy (repeatable; default both)",
    )
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)

    p = stage("pretrain", "pretrain the diffusion model (resumes if interrupted)", "pretrain")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--stop-at-step", type=int, help=argparse.SUPPRESS)

    p = stage("finetune", "steer a pretrained model toward an objective", None)
    from rewarddiff.finetune import METHODS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "methods:\n" + "\n".join(f"  {m:10s} {s.help}" for m, s in METHODS.items())
    p.add_argument("--method", required=True, choices=list(METHODS), help="steering method (below)")
    p.add_argument("--params", type=_json_object, default={}, help="method parameters as JSON")
    p.add_argument(
        "--objective",
        type=_json,
        required=True,
        help='JSON: {"reward": [{"oracle": spec, "weight": w, "transform": {...}}]}',
    )
    p.add_argument("--pretrained", type=Path, required=True)
    p.add_argument("--reward-model", type=Path, required=True, help="the ft reward copy")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, required=True)

    p = stage("sample", "draw designs from a (fine-tuned) model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--selected", type=Path, help="designs selected during fine-tuning")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)

    p = stage("score", "score designs with oracles (any user file in the domain format)")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--oracles", default="", help="comma-separated oracle specs")
    p.add_argument("--reward-model", type=Path, help="reward model for learned oracles (eval)")
    p.add_argument("--ft-reward-model", type=Path, help="fine-tuning reward copy")
    p.add_argument("--objective", type=_json, help="objective JSON (adds reward_ft/reward_eval)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--designs-out", type=Path, help="also write the designs with every score attached"
    )
    p.add_argument("--metrics-out", type=Path)
    p.add_argument("--metrics-params", type=_json_object, default={})
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--pretrained", type=Path)
    p.add_argument("--model", type=Path, help="the model that made the designs (label metrics)")
    p.add_argument(
        "--embed",
        action="store_true",
        help="molecules: embed 2D SDF records in 3D (RDKit ETKDG + MMFF94, seeded) before "
        "scoring; without it 2D records are an error for oracles that read coordinates",
    )

    p = sub.add_parser("report", help="tables and plots from scored campaigns")
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument(
        "--metrics",
        type=Path,
        nargs="+",
        required=True,
        help="<results>/<domain>/campaigns/<campaign>/<method>/seed<s>/metrics.json",
    )
    p.add_argument("--out-dir", type=Path, required=True)

    p = sub.add_parser(
        "import-edm", help="convert a released EDM QM9 checkpoint into a pretrained model"
    )
    p.add_argument("--weights", type=Path, required=True,
                   help="generative_model_ema.npy of the release (a torch state dict)")  # fmt: skip
    p.add_argument("--args", type=Path,
                   help="args.pickle of main_qm9.py (read as a Namespace only)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder: model.safetensors, manifest")
    p.add_argument("--property-norm", action="append", default=[], metavar="NAME=MEAN,MAD",
                   help="a conditional model's property normalisation (repeatable)")  # fmt: skip
    p.add_argument("--sampling-steps", type=int, help="default: the diffusion steps T")

    p = sub.add_parser("campaign", help="check a campaign sheet and list the jobs it expands to")
    p.add_argument("action", choices=["plan"], help="plan: validate the sheet, print the jobs")
    p.add_argument("sheet", type=Path, help="campaigns.tsv")
    p.add_argument(
        "--config", type=Path, default=Path("config/config.yaml"), help="pipeline config YAML"
    )

    p = sub.add_parser("oracles", help="list registered oracles of a domain")
    p.add_argument("--domain", required=True)
    return parser


def run(args: argparse.Namespace) -> None:
    from rewarddiff.config import stage_params
    from rewarddiff.domain import get_domain

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "section", None):
        args.params = stage_params(args.config, args.domain, args.section, args.params)
    if args.command not in ("report", "campaign", "import-edm"):
        get_domain(args.domain)  # fail early on an unknown domain
    match args.command:
        case "prepare":
            print(json.dumps(campaign.prepare(args.domain, args.params, args.out_dir), indent=1))
        case "train-reward":
            copies = tuple(args.copy or ("ft", "eval"))
            result = campaign.train_reward(
                args.domain, args.params, args.data_dir, args.out_dir, copies
            )
            print(json.dumps(result, indent=1))
        case "pretrain":
            print(
                json.dumps(
                    campaign.pretrain(
                        args.domain, args.params, args.data_dir, args.out_dir, args.stop_at_step
                    )
                )
            )
        case "finetune":
            result = campaign.finetune(
                args.domain,
                args.method,
                args.params,
                args.objective,
                args.pretrained,
                args.reward_model,
                args.data_dir,
                args.seed,
                args.out_dir,
            )
            print(f"oracle calls: {result['oracle_calls']}")
        case "sample":
            campaign.sample(args.domain, args.model, args.n, args.seed, args.out, args.selected)
        case "score":
            oracles = [o for o in args.oracles.split(",") if o]
            if not oracles and args.objective is None:
                raise UserError("score: give --oracles and/or --objective")
            table = campaign.score(
                args.domain,
                args.input,
                oracles,
                args.out,
                args.reward_model,
                args.objective,
                args.ft_reward_model,
                args.metrics_out,
                args.metrics_params,
                args.data_dir,
                args.pretrained,
                args.designs_out,
                args.model,
                args.embed,
            )
            print(table.drop(columns="design").describe().loc[["count", "mean"]].to_string())
        case "report":
            from rewarddiff.io import stage_output
            from rewarddiff.report import build_report

            with stage_output(args.out_dir):
                print(f"report: {build_report(args.results_dir, args.metrics, args.out_dir)}")
        case "campaign":
            from rewarddiff.config import load_config
            from rewarddiff.sheet import plan, read_sheet

            config = load_config(args.config)
            sheet = read_sheet(args.sheet, config["objectives"], domains=config["domains"])
            jobs = plan(sheet, config.get("results_dir", "results"))
            counts = ", ".join(f"{n} {stage}" for stage, n in jobs["stage"].value_counts().items())
            print(f"{args.sheet}: {len(sheet)} enabled rows, {len(jobs)} jobs ({counts})")
            print(jobs.to_string(index=False))
        case "import-edm":
            model = _importer("edm")(args.weights, args.args, args.out,
                                     **_import_flags(args))  # fmt: skip
            print(f"import-edm: {model}")
        case "oracles":
            from rewarddiff.oracles.registry import available

            for info in available(args.domain).values():
                print(
                    f"{info.name:28s} {info.direction:9s} {info.units:12s} {info.cost:9s}"
                    f"{'differentiable ' if info.differentiable else ''}{info.description}"
                )


def _importer(name: str):
    """The registered domain's converter ``name`` (:attr:`Domain.importers`)."""
    from rewarddiff.domain import domain_names, get_domain

    for domain in domain_names():
        if name in get_domain(domain).importers:
            return get_domain(domain).importers[name]
    raise UserError(f"no installed domain imports {name} models")


def _import_flags(args) -> dict:
    """``--property-norm NAME=MEAN,MAD`` and ``--sampling-steps`` as the importer's flags."""
    flags, norms = {}, {}
    for item in args.property_norm:
        name, _, values = item.partition("=")
        try:
            mean, mad = (float(v) for v in values.split(","))
        except ValueError:
            raise UserError(f"--property-norm {item!r}: expected NAME=MEAN,MAD") from None
        norms[name] = {"mean": mean, "mad": mad}
    if norms:
        flags["property_norms"] = norms
    if args.sampling_steps is not None:
        flags["sampling_steps"] = args.sampling_steps
    return flags


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UserError as err:
        print(f"rewarddiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable input, read-only output folder, full disk, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"rewarddiff {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
