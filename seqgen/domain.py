"""What the sequence domains (``dna``, ``protein``) share: a masked-diffusion generator over
token arrays (n, L) built from the dilated-CNN denoiser, its pretraining and conditioning, the
regressor for methods that fit their own reward model, FASTA designs and oracle scoring.
Subclasses supply the data, the reward models, ``to_designs`` and the evaluation metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import mannwhitneyu

from rewarddiff import UserError
from rewarddiff.config import dataclass_from, resolve_device
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune.ctrl import LabelCondition
from rewarddiff.generator import MaskedSequenceGenerator, condition_network
from rewarddiff.io import load_tensors, save_model, write_json
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import best_first
from rewarddiff.oracles.registry import make_oracles
from rewarddiff.oracles.transforms import differentiable_objective, objective_function
from rewarddiff.training import TrainConfig, train
from seqgen import metrics
from seqgen.data import write_fasta
from seqgen.model import CNNConfig, SequenceClassifier, SequenceDenoiser
from seqgen.oracles import load_classifier


class SequenceDomain:
    """Base of the sequence domains; dataclass subclasses set ``name``, ``design_suffix``,
    ``length`` (positions L) and ``vocab_size`` (tokens the networks see, e.g. 4 for DNA, 20
    amino acids + PAD for proteins), ``alphabet`` (the letters) and implement ``load_split``
    and ``to_designs``."""

    name: str
    alphabet: str
    length: int
    vocab_size: int
    condition_name: str  # what the classifier's classes are (``ctrl`` condition name)
    logo_colors: str = "classic"  # logomaker colour scheme of the report's sequence logos
    learned_oracles: tuple[str, ...] = ()  # oracles that read designs with the reward model
    fixed_length: bool = True  # the reward model reads exactly its length (else at most)

    # ----- reward models -------------------------------------------------------------------
    def train_reward(
        self, params: dict, data_dir: Path, out_dir: Path, copies: tuple[str, ...] = ("ft", "eval")
    ) -> dict:
        """Classifier ensembles over ``labels.tsv`` classes on disjoint halves of the training
        split (column ``half``; DNA: chromosome halves): ``ft`` trains on half 0 and steers,
        ``eval`` trains on half 1 and scores. Writes ``<copy>/model.safetensors`` and
        ``<copy>/metrics.json`` (held-out accuracy; AUROC for two classes)."""
        x_tr, lab_tr = self.load_split(data_dir, "train")
        x_va, lab_va = self.load_split(data_dir, "valid")
        x_te, lab_te = self.load_split(data_dir, "test")
        classes = self.class_order(lab_tr["label"])

        def y(lab):
            return torch.tensor([classes.index(c) for c in lab["label"]])

        net_cfg = dataclass_from(CNNConfig, params.get("network"), "train_reward.network")
        net_cfg.vocab_size, net_cfg.num_outputs = self.vocab_size, len(classes)
        fit_cfg = dataclass_from(learned.FitConfig, params.get("fit"), "train_reward.fit")
        results = {}
        for copy in copies:
            half = ("ft", "eval").index(copy)
            rows = torch.as_tensor((lab_tr["half"] == half).values)
            heads = []
            for head in range(params.get("heads", 1)):
                torch.manual_seed(params.get("seed", 0) + 100 * half + head)
                gen = torch.Generator().manual_seed(params.get("seed", 0) + 100 * half + head)
                net = SequenceClassifier(net_cfg)
                learned.fit(
                    net,
                    x_tr[rows],
                    y(lab_tr)[rows],
                    x_va,
                    y(lab_va),
                    fit_cfg,
                    gen,
                    log=lambda m, c=copy: print(c, m, flush=True),
                )
                heads.append(net)
            logits = torch.stack([learned.predict_batched(h, x_va) for h in heads]).mean(0)
            temperature = learned.fit_temperature(logits, y(lab_va))
            ensemble = learned.RewardEnsemble(heads, "classification", temperature)
            probs, _ = ensemble.predict(x_te)
            pred = probs.argmax(-1)
            test = {
                "accuracy": (pred == y(lab_te)).float().mean().item(),
                "per_class_accuracy": {
                    c: (pred[y(lab_te) == k] == k).float().mean().item()
                    for k, c in enumerate(classes)
                },
                "n_train": int(rows.sum()),
                "n_test": len(x_te),
                "temperature": temperature,
            }
            if len(classes) == 2:  # P(class 1) ranks the test set: Mann–Whitney AUROC
                test["auroc"] = auroc(probs[:, 1].numpy(), y(lab_te).numpy())
            if "chr" in lab_tr:
                test["train_chromosomes"] = sorted(lab_tr.loc[rows.numpy(), "chr"].unique())
            ensemble.save(
                Path(out_dir) / copy / "model.safetensors",
                {
                    "network": net_cfg.to_dict(),
                    "classes": classes,
                    "domain": self.name,
                    "length": int(x_tr.shape[1]),
                },  # fmt: skip
            )
            write_json(Path(out_dir) / copy / "metrics.json", test)
            results[copy] = test
        return results

    def label_condition(
        self,
        objective: dict,
        reward_model: Path,
        data_dir: Path | None = None,
        spec: dict | None = None,
    ) -> LabelCondition:
        """The classifier's label (``condition_name``: cell type, AMP activity) as a condition:
        p̂(y | x) from the calibrated classifier ensemble at ``reward_model``; label
        frequencies from the training split; target = the objective's. (``spec`` is unused:
        the classes come with the classifier.)"""
        classifier = load_classifier(str(reward_model))
        classes = classifier.config["classes"]
        frequencies = None
        if data_dir is not None:
            table = pd.read_csv(Path(data_dir) / "labels.tsv", sep="\t")
            counts = table[table["split"] == "train"]["label"].value_counts()
            frequencies = [[float(counts.get(c, 0)) for c in classes]]
        target = objective.get("target")

        def log_prob(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            probs = classifier.to(x.device)(x)  # relaxed one-hot (B, L, V) → (B, classes)
            return torch.log(probs.gather(1, y[:, :1]) + 1e-6)[:, 0]  # CTRL: log(p̂ + 1e-6)

        def predict(tokens: torch.Tensor) -> torch.Tensor:
            return classifier.predict(tokens.cpu())[0].argmax(-1, keepdim=True)

        return LabelCondition(
            [self.condition_name],
            [classes],
            log_prob,
            predict,
            frequencies,
            [target] if target in classes else None,
        )

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> MaskedSequenceGenerator:
        """Masked-diffusion generator over ``params["length"]`` positions (default
        ``self.length``) with the dilated-CNN denoiser of ``params["network"]``."""
        length = params.get("length", self.length)
        net_cfg = dataclass_from(CNNConfig, params.get("network"), "pretrain.network")
        net_cfg.vocab_size = self.vocab_size
        diffusion = MaskedDiffusion(
            self.vocab_size,
            num_labels=net_cfg.num_labels,
            label_dropout=params.get("label_dropout", 0.0),
        )
        config = {
            "network": net_cfg.to_dict(),
            "label_dropout": diffusion.label_dropout,
            "sampling_steps": params.get("sampling_steps", 100),
            "length": length,
            "domain": self.name,
        }
        return MaskedSequenceGenerator(
            diffusion,
            SequenceDenoiser(net_cfg),
            length,
            config["sampling_steps"],
            config=config,
        )

    def pretrain(
        self,
        params: dict,
        data_dir: Path,
        out_dir: Path,
        stop_at_step: int | None = None,
        identity: dict | None = None,
    ) -> dict:
        x, _ = self.load_split(data_dir, "train")
        gen = self.build_generator(params | {"length": x.shape[1]})
        gen.net.to(resolve_device(params.get("device", "auto")))
        cfg = dataclass_from(TrainConfig, params.get("train"), "pretrain.train")
        # the masked loss draws from the global RNG, whose state the checkpoint saves
        ema = train(
            gen.net,
            lambda net, batch: gen.diffusion.loss(net, batch),
            lambda idx: x[idx].to(gen.device),
            len(x),
            cfg,
            out_dir,
            stop_at_step,
            identity,
        )
        if stop_at_step is not None:
            return {"stopped_at": stop_at_step}
        save_model(Path(out_dir) / "model.safetensors", ema.model, gen.config)
        x_va, _ = self.load_split(data_dir, "valid")
        gen.net = ema.model
        ll = gen.log_likelihood(x_va[:512], generator=torch.Generator().manual_seed(0))
        return {
            "valid_loglik_per_seq": ll.mean().item(),
            "valid_nats_per_position": -ll.mean().item() / gen.length,
        }

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> MaskedSequenceGenerator:
        tensors, config = load_tensors(checkpoint)
        gen = self.build_generator(
            {
                "network": config["network"],
                "label_dropout": config["label_dropout"],
                "sampling_steps": config["sampling_steps"],
                "length": config["length"],
            }
        )
        gen.net.load_state_dict(tensors)
        gen.net.to(resolve_device(device))
        if config.get("condition"):
            gen.config["condition"] = config["condition"]
        return gen

    def conditional_generator(
        self, gen: MaskedSequenceGenerator, num_labels: int, label_dropout: float = 0.0
    ) -> MaskedSequenceGenerator:
        """``gen`` with a zero-initialised condition embedding added: ``num_labels`` classes,
        or a scalar value when ``num_labels`` is 0. Computes exactly ``gen``'s function."""
        new = self.build_generator(
            {
                "network": condition_network(gen.config["network"], num_labels),
                "label_dropout": label_dropout,
                "sampling_steps": gen.sampling_steps,
                "length": gen.length,
            }
        )
        return gen.with_condition(new)

    def reward_network(self, params: dict | None = None) -> SequenceClassifier:
        """A regressor over sequences (tokens or relaxed one-hot → (B,)) for methods that fit
        their own reward model (``rcgdm``, ``seiko``); ``params`` override CNNConfig fields."""
        cfg = {"hidden": 32, "layers": 4, "dropout": 0.1} | dict(params or {})
        net_cfg = dataclass_from(CNNConfig, cfg, "finetune reward_network")
        net_cfg.vocab_size, net_cfg.num_outputs = self.vocab_size, 1
        return SequenceClassifier(net_cfg)

    def save_generator(self, path: Path, gen: MaskedSequenceGenerator) -> None:
        save_model(path, gen.net, gen.config)

    # ----- designs, oracles, rewards --------------------------------------------------------
    def write_designs(self, path: Path, designs: list[str], scores: dict[str, np.ndarray]) -> None:
        """FASTA of ``designs`` under their own headers (id and description, see
        :func:`design_id`) with one ``name=value`` field per score added (replacing a field of
        that name already there)."""
        descriptions = [
            with_fields(getattr(d, "description", ""), {k: v[i] for k, v in scores.items()})
            for i, d in enumerate(designs)
        ]
        ids = [design_id(d, i) for i, d in enumerate(designs)]
        write_fasta(path, ids, list(designs), descriptions)

    def design_labels(self, designs: list[str]) -> list[str]:
        """``id SEQUENCE`` per design (the FASTA record id; ``design_<i>`` if generated)."""
        return [f"{design_id(d, i)} {d}".rstrip() for i, d in enumerate(designs)]

    def score(
        self, designs: list[str], oracles: list[str], reward_model: Path | None = None
    ) -> dict[str, np.ndarray]:
        """One column per oracle spec (NaN where an oracle failed on a design; every oracle
        gives NaN for a design :meth:`scorable` rejects). A learned oracle's reward model must
        fit every design's length (UserError naming the record)."""
        built = make_oracles(self.name, oracles, reward_model=reward_model)
        if any(spec.partition(":")[0] in self.learned_oracles for spec in built):
            self.check_lengths(designs, reward_model)
        keep = np.array([self.scorable(d) for d in designs], dtype=bool)
        subset = [d for d, k in zip(designs, keep) if k]
        columns = {}
        for spec, oracle in built.items():
            columns[spec] = np.full(len(designs), np.nan)
            if subset:
                columns[spec][keep] = oracle(subset)
        return columns

    def scorable(self, design: str) -> bool:
        """Whether oracles see ``design`` at all (every design here)."""
        return True

    def check_lengths(self, designs: list[str], reward_model: Path) -> None:
        """UserError naming the first design whose length the reward model cannot read: other
        than its length (``fixed_length``) or above it."""
        length = load_classifier(str(reward_model)).config["length"]
        for i, design in enumerate(designs):
            if len(design) != length and (self.fixed_length or len(design) > length):
                expected = f"{'' if self.fixed_length else 'at most '}{length}"
                where = getattr(design, "where", f"design {i}")
                raise UserError(
                    f"{where}: length {len(design)}; the reward model {reward_model} reads "
                    f"sequences of length {expected}"
                )

    def reward_function(self, components: list[dict], reward_model: Path):
        """tokens (n, L) → combined reward (n,), from the objective's oracle components."""
        return objective_function(self.name, components, self.to_designs, reward_model=reward_model)

    def torch_reward_function(self, components: list[dict], reward_model: Path):
        """Relaxed one-hot (n, L, V) → differentiable combined reward (n,)."""
        return differentiable_objective(self.name, components, reward_model=reward_model)

    def diversity(self, tokens: torch.Tensor) -> float:
        """Mean pairwise Hamming distance of token arrays (the per-round log's diversity)."""
        return metrics.mean_pairwise_hamming(tokens.numpy())

    def render_designs(
        self, runs: list[tuple[str, Path]], path: Path, per_run: int = 32, positions: int = 60
    ) -> None:
        """PNG of sequence logos for the report: one row per (label, run directory), the
        information content (bits) per position of its ``per_run`` best designs by
        ``reward_eval``, over the first ``positions`` positions (shorter peptides end early)."""
        import logomaker
        from matplotlib.figure import Figure

        from rewarddiff.io import atomic_path

        width = min(positions, self.length)
        figure = Figure(figsize=(1.0 + 0.16 * width, 1.5 * len(runs)))
        for row, (label, run_dir) in enumerate(runs):
            designs = self.read_designs(Path(run_dir) / f"designs{self.design_suffix}")
            scores = pd.read_csv(Path(run_dir) / "scores.csv")["reward_eval"].to_numpy()
            best = best_first(scores)[:per_run]
            counts = pd.DataFrame(0.0, index=range(width), columns=list(self.alphabet))
            for i in best:  # letter counts per position (shorter designs end early)
                for position, letter in enumerate(designs[i][:width]):
                    counts.loc[position, letter] += 1
            bits = logomaker.transform_matrix(
                counts, from_type="counts", to_type="information", pseudocount=0.1
            )
            axes = figure.add_subplot(len(runs), 1, row + 1)
            logomaker.Logo(bits, ax=axes, color_scheme=self.logo_colors)
            axes.set_ylabel(f"{label}\nbits", fontsize=8)
            axes.set_xticks([])
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)


def require_splits(splits: pd.Series, origin: str) -> None:
    """UserError naming the first of train, valid and test that ``splits`` (one per record)
    leaves empty, and ``origin`` (the settings that chose the records and their splits)."""
    for split in ("train", "valid", "test"):
        if not (splits == split).any():
            raise UserError(f"data: split {split!r} is empty: {len(splits)} records after {origin}")


def design_id(design: str, index: int) -> str:
    """The FASTA record id a design was read with, else ``design_<index>``."""
    return getattr(design, "id", None) or f"design_{index}"


def with_fields(description: str, fields: dict[str, float]) -> str:
    """``description`` with ``name=value`` fields for ``fields`` (values to 4 significant
    digits) added after its words, replacing words that set the same names."""
    kept = [w for w in description.split() if w.partition("=")[0] not in fields]
    return " ".join(kept + [f"{k}={v:.4g}" for k, v in fields.items()])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (n,) for binary ``labels`` (n,) in {0, 1}:
    the Mann–Whitney U of the positives over n₊·n₋ (ties count one half)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u / (len(positive) * len(negative)))
