"""Domains: the :class:`Domain` base class and the registry.

The base class implements every stage that is the same for all domains — reward-model training
on the ft/eval halves, pretraining, generator save/load/conditioning, scoring through the
oracle registry, reward functions, the likelihood under the pretrained model — on top of a few
hooks that a domain package (``seqgen``, ``molgen``, ``shapes``) supplies: its data sources,
its networks, its design codec, its oracles and its metrics. A domain registers one instance
under its name; the core looks it up by name. Third-party domains use the
``rewarddiff.domains`` entry-point group.

Two kinds of arrays meet here: *generator outputs* x (a tensor (n, ...) in the generator's own
space, e.g. tokens or normalised points) and *designs* (what oracles score and files hold, e.g.
strings, molecules, world-unit point sets). Hooks that read generator outputs belong to a
domain bound to the generator that made them (:meth:`Domain.for_generator`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.config import dataclass_from, resolve_device
from rewarddiff.generator import Generator, condition_network
from rewarddiff.io import (
    atomic_path,
    load_tensors,
    save_model,
    write_json,
)
from rewarddiff.oracles import learned
from rewarddiff.oracles.registry import make_oracles
from rewarddiff.oracles.transforms import differentiable_objective, objective_function
from rewarddiff.training import TrainConfig, train

ENTRY_POINT_GROUP = "rewarddiff.domains"  # name = "package.module:DOMAIN_INSTANCE"
# name = "package:SUFFIX_STRING": a domain's design-file suffix, read without importing the
# domain (Snakemake's cluster jobs); a domain without one is imported for its design_suffix
SUFFIX_GROUP = "rewarddiff.design_suffixes"
COPIES = ("ft", "eval")  # the reward-model copies: half 0 steers, half 1 evaluates

_DOMAINS: dict[str, Domain] = {}


def elbo(gen: Generator, x: Tensor, num_t: int = 16) -> Tensor:
    """ELBO of log p(x) under ``gen`` (n,) in nats, with ``num_t`` draws of t seeded at 0."""
    return gen.log_likelihood(x, num_t=num_t, generator=torch.Generator().manual_seed(0))


class Domain(ABC):
    """What a domain supplies (the abstract methods and hook attributes) and what the core
    does with it (everything else). Every path argument is explicit; ``params`` is the
    stage's config section."""

    name: str
    design_suffix: str  # of design files, e.g. ".fasta"
    # the reward network: its class and the dataclass of its settings (the config's
    # ``network`` section; the core sets ``num_outputs``)
    reward_net: ClassVar[type[nn.Module]]
    reward_net_settings: ClassVar[type]
    small_reward_network: ClassVar[dict] = {}  # settings of :meth:`reward_network`
    max_valid: ClassVar[int | None] = None  # validation designs per fit (train_reward)
    embeds: ClassVar[bool] = False  # read_designs can embed 2D records in 3D (molecules)
    # converters of other tools' released models: ``rewarddiff import-<name>`` calls
    # fn(weights, args, out_dir, **flags) -> model file (e.g. molecules: "edm")
    importers: ClassVar[dict[str, Callable]] = {}
    report_columns: ClassVar[dict[str, str]] = {}  # metric → better direction, report tables

    # ----- data ----------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """Write the prepared splits (train, valid, test) into ``out_dir``, with a ``half``
        column (0 = ft, 1 = eval) for the training rows; returns a summary for the manifest."""

    @abstractmethod
    def load_split(self, data_dir: Path, split: str) -> tuple[Tensor, Any]:
        """Generator-space designs x (n, ...) of a prepared split and its labels: a
        DataFrame or a mapping of (n,) columns (``half`` in train)."""

    # ----- networks ------------------------------------------------------------------------
    @abstractmethod
    def build_generator(self, params: dict) -> Generator:
        """An untrained generator from settings; its ``config`` rebuilds it (saved with the
        weights)."""

    @abstractmethod
    def generator_settings(self, params: dict, data_dir: Path, x: Tensor) -> dict:
        """The pretraining settings completed from the prepared data and its training designs
        ``x`` (sizes, normalisation, …) for :meth:`build_generator`."""

    def pretraining_data(self, data_dir: Path) -> tuple[Tensor, Any]:
        """The designs pretraining draws its batches from and their labels (with ``half``;
        default: the training split)."""
        return self.load_split(data_dir, "train")

    def training_batch(self, x: Tensor, idx: Tensor, gen: Generator) -> Tensor:
        """One pretraining batch of ``x`` at rows ``idx`` (B,) (default: those rows)."""
        return x[idx]

    @abstractmethod
    def pretrain_summary(self, gen: Generator, x_valid: Tensor, params: dict) -> dict:
        """Held-out figures of the pretrained ``gen`` on the validation designs (the ELBO,
        :func:`elbo`), for the manifest and the report."""

    def reward_network_config(
        self, settings: dict | None, num_outputs: int, where: str, data_dir: Path | None = None
    ):
        """:attr:`reward_net_settings` from a config section (``where`` names it in errors),
        for ``num_outputs`` outputs; ``data_dir``: defaults read from the prepared data."""
        cfg = dataclass_from(self.reward_net_settings, settings, where)
        cfg.num_outputs = num_outputs
        return cfg

    @abstractmethod
    def reward_targets(
        self, params: dict, data_dir: Path, labels: Any
    ) -> learned.Classes | learned.Regression:
        """What the reward models predict from the training ``labels``: classes of a label
        column, or standardised regression columns."""

    # ----- design codec ----------------------------------------------------------------------
    @abstractmethod
    def to_designs(self, x: Tensor) -> Any:
        """Generator outputs (n, ...) → n designs (of the bound generator)."""

    @abstractmethod
    def encode_designs(self, designs: Any, gen: Generator, params: dict) -> Tensor:
        """Designs → ``gen``'s space (n', ...), those ``gen`` can represent (for its
        likelihood; ``params``: the metrics settings)."""

    @abstractmethod
    def read_designs(self, path: Path, embed: bool = False) -> Any:
        """The designs of a file, with their ids; ``embed`` (only where :attr:`embeds`):
        embed 2D records in 3D."""

    @abstractmethod
    def write_designs(self, path: Path, designs: Any, scores: dict[str, np.ndarray]) -> None:
        """Write designs (ids kept) with one (n,) array per score."""

    @abstractmethod
    def design_labels(self, designs: Any) -> list[str]:
        """One printable id per design."""

    def torch_designs(self, x: Tensor) -> Tensor:
        """Differentiable generator outputs → what differentiable oracles read (default:
        themselves)."""
        return x

    def for_generator(self, gen: Generator) -> Domain:
        """This domain reading ``gen``'s outputs: the hooks that take generator outputs decode
        them with what ``gen``'s config holds (default: nothing, ``self``)."""
        return self

    # ----- oracles and metrics ---------------------------------------------------------------
    def check_designs(self, designs: Any, oracles: list[str], reward_model: Path | None) -> None:
        """UserError for designs that ``oracles`` cannot read at all (default: none)."""
        return None

    def scorable(self, design: Any) -> bool:
        """Whether oracles see ``design`` (default: every design; others score NaN)."""
        return True

    @abstractmethod
    def design_metrics(
        self, designs: Any, params: dict, data_dir: Path, reward_model: Path | None
    ) -> dict:
        """The domain's evaluation figures of a design set (``metrics.json``)."""

    def loglik_figures(self, ll: Tensor, gen: Generator, n: int) -> dict:
        """``loglik_pretrained`` from the ELBOs ``ll`` of the representable ones of ``n``
        designs."""
        return {"loglik_pretrained": ll.mean().item() if len(ll) else float("nan")}

    @abstractmethod
    def diversity(self, x: Tensor) -> float:
        """Diversity of generator outputs (n, ...) (the per-round log's)."""

    def quality(self, x: Tensor) -> dict:
        """Sample-quality figures of generator outputs, logged every round (default: none)."""
        return {}

    # ----- conditions --------------------------------------------------------------------------
    @abstractmethod
    def label_condition(
        self,
        objective: dict,
        reward_model: Path,
        data_dir: Path | None = None,
        spec: dict | list | None = None,
    ) -> LabelCondition:
        """The label condition ``ctrl`` adds, defined by the reward model at ``reward_model``
        (frequencies from ``data_dir``'s training split; ``spec``: rebuild a saved one)."""

    # ----- report ------------------------------------------------------------------------------
    def render_designs(self, runs: list[tuple[str, Any, np.ndarray]], path: Path) -> bool:
        """Draw the best designs of each (label, designs, their ``reward_eval`` scores) as a
        PNG at ``path``; whether it drew (default: no picture)."""
        return False

    # ===== the stages ==========================================================================
    def train_reward(
        self, params: dict, data_dir: Path, out_dir: Path, copies: tuple[str, ...] = COPIES
    ) -> dict:
        """Reward-model ensembles (``heads`` networks each) on disjoint halves of the training
        split: ``ft`` trains on half 0 and steers, ``eval`` on half 1 and scores; head k of
        half h is seeded ``seed + 100·h + k``. Writes ``<copy>/model.safetensors`` and
        ``<copy>/metrics.json`` (held-out test figures); returns them per copy."""
        x_tr, lab_tr = self.load_split(data_dir, "train")
        x_va, lab_va = self.load_split(data_dir, "valid")
        x_te, lab_te = self.load_split(data_dir, "test")
        targets = self.reward_targets(params, data_dir, lab_tr)
        net_cfg = self.reward_network_config(
            params.get("network"), targets.num_outputs, "train_reward.network", data_dir
        )
        fit_cfg = dataclass_from(learned.FitConfig, params.get("fit"), "train_reward.fit")
        fit_cfg.task = targets.task
        n_valid = params.get("max_valid", self.max_valid)
        x_va = x_va[:n_valid]
        results = {}
        for copy in copies:
            half = COPIES.index(copy)
            rows = torch.as_tensor(np.asarray(lab_tr["half"]) == half)
            fitted = targets.of_half(lab_tr, rows)
            y_tr, y_va = fitted.y(lab_tr)[rows], fitted.y(lab_va)[:n_valid]
            heads = []
            for head in range(params.get("heads", 1)):
                seed = params.get("seed", 0) + 100 * half + head
                torch.manual_seed(seed)
                net = self.reward_net(net_cfg)
                learned.fit(net, x_tr[rows], y_tr, x_va, y_va, fit_cfg,
                            torch.Generator().manual_seed(seed),
                            log=lambda m, c=copy: print(c, m, flush=True))  # fmt: skip
                heads.append(net)
            ensemble = fitted.ensemble(heads, x_va, y_va)
            test = fitted.held_out(ensemble, x_te, lab_te)
            test |= {"n_train": int(rows.sum()), "n_test": len(x_te)}
            test |= self.half_summary(lab_tr, rows)
            config = {"network": net_cfg.to_dict(), **fitted.config(), "domain": self.name}
            ensemble.save(Path(out_dir) / copy / "model.safetensors",
                          config | self.reward_config(data_dir, x_tr))  # fmt: skip
            write_json(Path(out_dir) / copy / "metrics.json", test)
            results[copy] = test
        return results

    def half_summary(self, labels: Any, rows: Tensor) -> dict:
        """Figures of the training rows (bool (n,)) one copy trains on, for its
        ``metrics.json`` (default: none)."""
        return {}

    def reward_config(self, data_dir: Path, x_train: Tensor) -> dict:
        """Settings saved with every reward model that its readers need (default: none)."""
        return {}

    def reward_network(self, params: dict | None = None) -> nn.Module:
        """A fresh regressor (designs → (B,), with ``features``) for methods that fit their
        own reward model (``rcgdm``, ``seiko``): :attr:`small_reward_network` with
        ``params`` over it."""
        settings = self.small_reward_network | dict(params or {})
        return self.reward_net(self.reward_network_config(settings, 1, "finetune reward_network"))

    def pretrain(
        self,
        params: dict,
        data_dir: Path,
        out_dir: Path,
        stop_at_step: int | None = None,
        identity: dict | None = None,
    ) -> dict:
        """Train the generator with EMA (:func:`rewarddiff.training.train`, resumable for the
        same ``identity``) and save the EMA weights as ``model.safetensors``; returns
        :meth:`pretrain_summary` (``{"stopped_at": step}`` when stopped early). With
        ``train_half`` (``ft`` or ``eval``) only that half of the training split is used, so
        that the other half's reward copy judges a generator that never saw its molecules
        (EDM's conditional protocol: the evaluation regressor and the generator train on
        disjoint halves)."""
        x, labels = self.pretraining_data(data_dir)
        if params.get("train_half") is not None:
            if params["train_half"] not in COPIES:
                raise UserError(f"pretrain.train_half: {params['train_half']!r} is not ft or eval")
            x = x[torch.as_tensor(np.asarray(labels["half"]) == COPIES.index(params["train_half"]))]
        gen = self.build_generator(self.generator_settings(params, data_dir, x))
        gen.net.to(resolve_device(params.get("device", "auto")))
        cfg = dataclass_from(TrainConfig, params.get("train"), "pretrain.train")
        # the losses draw t, masks and noise from the global RNG, whose state is checkpointed
        ema = train(gen.net, lambda net, batch: gen.loss(batch),
                    lambda idx: self.training_batch(x, idx, gen).to(gen.device), len(x), cfg,
                    out_dir, stop_at_step, identity)  # fmt: skip
        if stop_at_step is not None:
            return {"stopped_at": stop_at_step}
        save_model(Path(out_dir) / "model.safetensors", ema.model, gen.config)
        gen.net = ema.model
        return self.pretrain_summary(gen, self.load_split(data_dir, "valid")[0], params)

    def adopt_pretrained(self, source: Path, params: dict, data_dir: Path, out_dir: Path) -> dict:
        """Instead of pretraining: the model at ``source`` (``model.safetensors`` or a folder
        holding it, e.g. written by ``rewarddiff import-edm`` or a bundled model) checked by
        loading it, saved as this stage's ``model.safetensors`` with the source's
        ``train_log.csv`` (an empty log when it has none); returns :meth:`pretrain_summary` and
        what was adopted."""
        source = Path(source)
        path = source / "model.safetensors" if source.is_dir() else source
        if not path.is_file():
            raise UserError(f"pretrain.checkpoint: {source}: no model file (model.safetensors)")
        gen = self.load_generator(path, "cpu")
        out_dir = Path(out_dir)
        self.save_generator(out_dir / "model.safetensors", gen)
        log = path.parent / "train_log.csv"
        with atomic_path(out_dir / "train_log.csv") as tmp:
            tmp.write_text(log.read_text() if log.is_file() else "step,loss\n")
        summary = self.pretrain_summary(gen, self.load_split(data_dir, "valid")[0], params)
        return {"adopted": str(path)} | summary  # its hash: the manifest's input_hashes

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> Generator:
        """The generator saved at ``checkpoint`` (weights + config, its condition kept)."""
        tensors, config = load_tensors(checkpoint)
        gen = self.build_generator(config)
        gen.net.load_state_dict(tensors)
        gen.net.to(resolve_device(device))
        gen.load_config(config)
        return gen

    def save_generator(self, path: Path, gen: Generator) -> None:
        save_model(path, gen.net, gen.saved_config())

    def conditional_generator(self, gen: Generator, num_labels: int) -> Generator:
        """``gen`` with a zero-initialised condition embedding added: ``num_labels`` classes,
        or a scalar value when ``num_labels`` is 0. Computes exactly ``gen``'s function."""
        network = condition_network(gen.config["network"], num_labels)
        return gen.with_condition(self.build_generator(gen.config | {"network": network}))

    def score(
        self, designs: Any, oracles: list[str], reward_model: Path | None = None
    ) -> dict[str, np.ndarray]:
        """One column (n,) per oracle spec: NaN where an oracle failed on a design and, for
        every oracle, on the designs :meth:`scorable` rejects."""
        built = make_oracles(self.name, oracles, reward_model=reward_model)
        self.check_designs(designs, list(built), reward_model)
        keep = np.array([self.scorable(d) for d in designs], dtype=bool)
        subset = designs if keep.all() else [d for d, k in zip(designs, keep) if k]
        columns = {}
        for spec, oracle in built.items():
            columns[spec] = np.full(len(designs), np.nan)
            if keep.any():
                columns[spec][keep] = oracle(subset)
        return columns

    def reward_function(self, components: list[dict], reward_model: Path) -> Callable:
        """Generator outputs (n, ...) → combined reward (n,) of the objective's components."""
        return objective_function(self.name, components, self.to_designs, reward_model=reward_model)

    def torch_reward_function(self, components: list[dict], reward_model: Path) -> Callable:
        """Differentiable generator outputs → differentiable combined reward (n,)."""
        objective = differentiable_objective(self.name, components, reward_model=reward_model)
        return lambda x: objective(self.torch_designs(x))

    def metrics(
        self,
        designs: Any,
        params: dict,
        data_dir: Path,
        reward_model: Path | None,
        pretrained: Path | None,
    ) -> dict:
        """:meth:`design_metrics` and, with ``pretrained``, the mean ELBO of the designs under
        the pretrained generator (``loglik_num_t`` draws of t): :meth:`loglik_figures`."""
        out = self.design_metrics(designs, params, data_dir, reward_model)
        if pretrained is not None:
            gen = self.load_generator(pretrained, "auto")
            x = self.encode_designs(designs, gen, params)
            ll = elbo(gen, x, params.get("loglik_num_t", 16))
            out |= self.loglik_figures(ll, gen, len(designs))
        return out

    def class_condition(
        self,
        name: str,
        classes: list[str],
        column: str,
        probs: Callable[[Tensor], Tensor],
        predict: Callable[[Tensor], Tensor],
        objective: dict,
        data_dir: Path | None,
    ) -> LabelCondition:
        """A label condition ``name`` over a classifier's ``classes``: ``probs(x)``
        differentiable class probabilities (B, C) of generator outputs, ``predict(x)`` the
        same (n, C) on the CPU; class frequencies of the training split's ``column`` (with
        ``data_dir``); target = the objective's ``target`` class."""
        frequencies = None
        if data_dir is not None:
            counts = self.load_split(data_dir, "train")[1][column].value_counts()
            frequencies = [[float(counts.get(c, 0)) for c in classes]]
        target = objective.get("target")

        def log_prob(x: Tensor, y: Tensor) -> Tensor:
            return torch.log(probs(x).gather(1, y[:, :1]) + 1e-6)[:, 0]  # CTRL: log(p̂ + 1e-6)

        return LabelCondition([name], [classes], log_prob,
                              lambda x: predict(x).argmax(-1, keepdim=True), frequencies,
                              [target] if target in classes else None)  # fmt: skip


def design_suffix(name: str) -> str:
    for ep in entry_points(group=SUFFIX_GROUP, name=name):
        return ep.load()
    return get_domain(name).design_suffix


def register_domain(domain: Domain) -> Domain:
    _DOMAINS[domain.name] = domain
    return domain


def domain_names() -> list[str]:
    """Every domain name known: registered, or declared by an installed package."""
    return sorted(set(_DOMAINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def get_domain(name: str) -> Domain:
    """The domain ``name``: registered, else loaded from its package's entry point (built-in
    domains are declared in this project's ``pyproject.toml`` like any other package's)."""
    if name not in _DOMAINS:
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
            register_domain(ep.load())
    if name not in _DOMAINS:
        raise UserError(f"unknown domain {name!r} (known: {', '.join(domain_names())})")
    return _DOMAINS[name]
