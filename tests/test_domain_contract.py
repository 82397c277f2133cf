"""The :class:`rewarddiff.domain.Domain` contract, checked for every built-in domain on tiny data:
the design codec round-trips, scoring gives one column per oracle, the reward copies train on
disjoint halves of train, pretraining on one half uses exactly it, and a saved generator
samples as the one loaded before."""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from rewarddiff import UserError
from rewarddiff.domain import COPIES, Domain, design_suffix, domain_names, get_domain
from rewarddiff.oracles import learned

TRAIN = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 1}
SEQ_NET = {"hidden": 8, "layers": 1}
POINT_NET = {"hidden": 16, "layers": 1, "k": 8, "heads": 2}
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@dataclass
class Case:
    data: dict  # prepare params (``{tmp}`` in a value: the case's folder)
    reward: dict
    pretrain: dict
    oracles: list[str]
    files: dict = field(default_factory=dict)  # user files to write first: name → text


def dna_files(n: int = 60, seed: int = 0) -> dict:
    """A user FASTA of 200 bp sequences and its two-class labels (no chromosomes: the ft/eval
    halves are drawn at random)."""
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(n)]
    fasta = "".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs))
    labels = "id\tlabel\n" + "".join(f"s{i}\t{('HepG2', 'K562')[i % 2]}\n" for i in range(n))
    return {"dna.fasta": fasta, "labels.tsv": labels}


CASES = {
    "dna": Case(
        {"source": "fasta", "fasta": "{tmp}/dna.fasta", "labels": "{tmp}/labels.tsv"},
        {"network": SEQ_NET, "fit": {"steps": 4, "batch_size": 8}},
        {"network": SEQ_NET, "sampling_steps": 4, "train": TRAIN, "device": "cpu"},
        ["celltype_prob:HepG2", "gc_content"],
        dna_files(),
    ),
    "protein": Case(
        {"max_length": 30, "max_per_split": 50},
        {"network": SEQ_NET, "fit": {"steps": 4, "batch_size": 8}},
        {"network": SEQ_NET, "sampling_steps": 4, "train": TRAIN, "device": "cpu"},
        ["amp_prob", "charge"],
    ),
    "molecule": Case(
        {"source": "qm9", "max_per_split": 60, "max_atoms": 12},
        {"targets": ["gap"], "network": {"mul": 4, "lmax": 1, "layers": 1},
         "fit": {"steps": 4, "batch_size": 16, "eval_every": 4}},
        {"network": {"hidden": 16, "layers": 1}, "diffusion_steps": 20, "sampling_steps": 4,
         "train": TRAIN, "device": "cpu", "loglik_molecules": 8},
        ["property:gap", "qed"],
    ),
    "shape": Case(
        {"per_family": {"train": 6, "valid": 2, "test": 2}, "points": 32, "stored_points": 64},
        {"network": POINT_NET, "fit": {"steps": 4, "batch_size": 8, "eval_every": 4}},
        {"network": POINT_NET, "diffusion_steps": 20, "sampling_steps": 4, "train": TRAIN,
         "loglik_shapes": 4, "eval_samples": 0, "device": "cpu"},
        ["height", "family_prob:chair"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request, tmp_path_factory):
    """A domain with prepared data, ft/eval reward copies (the training designs each copy's
    fit saw) and a pretrained generator."""
    name, case = request.param, CASES[request.param]
    dom, tmp = get_domain(name), tmp_path_factory.mktemp(name)
    for file, text in case.files.items():
        (tmp / file).write_text(text)
    params = {k: v.format(tmp=tmp) if isinstance(v, str) else v for k, v in case.data.items()}
    return train_domain(dom, case, params, tmp)


def train_domain(dom, case, data_params: dict, tmp):
    """Prepare ``dom``'s data into ``tmp``, train its ft/eval reward copies (recording the
    training designs each copy's fit saw) and pretrain: (dom, case, tmp, {copy: designs})."""
    dom.prepare(data_params, tmp / "data")
    seen, fit = [], learned.fit

    def recording_fit(net, x, *args, **kwargs):  # the designs each copy is fitted on
        seen.append(x)
        return fit(net, x, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(learned, "fit", recording_fit)
        torch.manual_seed(0)
        dom.train_reward(case.reward, tmp / "data", tmp / "rewards")
    torch.manual_seed(0)
    dom.pretrain(case.pretrain, tmp / "data", tmp / "pretrained")
    return dom, case, tmp, dict(zip(COPIES, seen))


def rows(x: torch.Tensor) -> Counter:
    """The designs (n, ...) of a tensor as a multiset of row bytes."""
    return Counter(row.numpy().tobytes() for row in x)


def test_every_domain_implements_the_base_class():
    assert set(CASES) <= set(domain_names())  # the built-ins, declared by entry points
    for name in domain_names():
        dom = get_domain(name)
        assert isinstance(dom, Domain) and dom.name == name
        assert design_suffix(name) == dom.design_suffix  # the entry point's, without import


def test_reward_copies_train_on_disjoint_halves_that_cover_train(trained):
    dom, _, tmp, seen = trained
    for copy in COPIES:
        assert (tmp / "rewards" / copy / "model.safetensors").exists()
        assert (tmp / "rewards" / copy / "metrics.json").exists()
    x_train, labels = dom.load_split(tmp / "data", "train")
    ft, ev = rows(seen["ft"]), rows(seen["eval"])
    assert not set(ft) & set(ev)  # no training design in both halves
    assert ft + ev == rows(x_train)
    half = torch.as_tensor(np.asarray(labels["half"]) == 0)
    assert rows(x_train[half]) == ft


def test_generator_samples_round_trip_through_a_saved_generator(trained):
    dom, _, tmp, _ = trained
    gen = dom.load_generator(tmp / "pretrained" / "model.safetensors")
    x, _ = gen.sample(3, torch.Generator().manual_seed(1))
    dom.save_generator(tmp / "again.safetensors", gen)
    again = dom.load_generator(tmp / "again.safetensors")
    assert torch.equal(again.sample(3, torch.Generator().manual_seed(1))[0], x)
    assert again.config == gen.config


def test_designs_round_trip_with_their_ids(trained):
    dom, _, tmp, _ = trained
    gen = dom.load_generator(tmp / "pretrained" / "model.safetensors")
    x, _ = gen.sample(4, torch.Generator().manual_seed(2))
    first = tmp / f"sampled{dom.design_suffix}"
    dom.write_designs(first, dom.for_generator(gen).to_designs(x), {})  # samples are writable
    designs = dom.read_designs(first)
    labels = dom.design_labels(designs)
    assert len(labels) == len(set(labels)) == 4 and all(isinstance(s, str) for s in labels)
    second = tmp / f"again{dom.design_suffix}"
    dom.write_designs(second, designs, {"score": np.arange(4.0)})
    back = dom.read_designs(second)
    assert dom.design_labels(back) == labels  # ids kept
    assert torch.equal(dom.encode_designs(back, gen, {}), dom.encode_designs(designs, gen, {}))


def test_score_gives_one_column_per_oracle(trained):
    dom, case, tmp, _ = trained
    gen = dom.load_generator(tmp / "pretrained" / "model.safetensors")
    view, model = dom.for_generator(gen), tmp / "rewards" / "eval" / "model.safetensors"
    real = view.to_designs(dom.load_split(tmp / "data", "test")[0][:5])
    columns = dom.score(real, case.oracles, model)
    assert list(columns) == case.oracles
    assert all(c.shape == (5,) and np.isfinite(c).all() for c in columns.values())
    sampled = view.to_designs(gen.sample(6, torch.Generator().manual_seed(3))[0])
    unscorable = ~np.array([dom.scorable(d) for d in sampled])
    for values in dom.score(sampled, case.oracles, model).values():
        assert values.shape == (6,) and np.isnan(values[unscorable]).all()


def test_pretraining_on_one_half_uses_exactly_that_half(trained):
    """pretrain.train_half: the generator's training set is the ft half of train, disjoint from
    the eval copy's designs (EDM's conditional protocol); the size prior follows it."""
    dom, case, tmp, seen = trained
    x, labels = dom.pretraining_data(tmp / "data")
    half = torch.as_tensor(np.array(labels["half"]))
    drawn_from, training_batch = [], dom.training_batch

    def recording_batch(self, x, idx, gen):
        drawn_from.append(x)
        return training_batch(x, idx, gen)

    params = case.pretrain | {"train_half": "ft", "train": case.pretrain["train"] | {"steps": 2}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(dom), "training_batch", recording_batch)
        dom.pretrain(params, tmp / "data", tmp / "pretrained_ft")
    assert rows(drawn_from[0]) == rows(x[half == 0])
    assert not set(rows(drawn_from[0])) & set(rows(x[half == 1]))
    with pytest.raises(UserError, match="train_half: 'both' is not ft or eval"):
        dom.pretrain(case.pretrain | {"train_half": "both"}, tmp / "data", tmp / "bad")
