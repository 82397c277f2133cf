"""FASTA / labels TSV reading: round trip and every bad-input case names file, record, problem."""

import pytest

from rewarddiff import UserError
from seqgen.data import (
    chromosome_halves,
    decode,
    encode,
    load_encode_dhs,
    read_fasta,
    read_labels,
    write_fasta,
)


def test_fasta_round_trip(tmp_path):
    seqs = ["ACGT" * 30, "TTGCA" * 24]
    write_fasta(tmp_path / "x.fasta", ["s1", "s2"], seqs, ["score=1", ""])
    ids, back = read_fasta(tmp_path / "x.fasta")
    assert ids == ["s1", "s2"] and back == seqs
    assert decode(encode(seqs[:1])) == seqs[:1]


@pytest.mark.parametrize(
    "text, length, message",
    [
        (">a\nACGT\n>b\nACXT\n", None, r"record 2 \('b'\): invalid letter 'X' at position 3"),
        (">a\nACGT\n>b\n\n", None, r"record 2 \('b'\): empty sequence"),
        (">a\nACGT\n>b\nACG\n", 4, r"record 2 \('b'\): length 3, expected 4"),
        (">a\nACGT\n>a\nACGT\n", None, "duplicate record id 'a'"),
        ("", None, "no FASTA records"),
    ],
)
def test_bad_fasta(tmp_path, text, length, message):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        read_fasta(path, length=length)
    assert str(path) in str(err.value)


def test_labels_tsv_unknown_id_and_missing(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("id\tlabel\na\tHepG2\nzz\tK562\n")
    with pytest.raises(UserError, match=r"line 3: unknown id 'zz'"):
        read_labels(path, ["a", "b"])
    path.write_text("id\tlabel\na\tHepG2\n")
    with pytest.raises(UserError, match="no label for id 'b'"):
        read_labels(path, ["a", "b"])
    assert read_labels(path, ["a"]).tolist() == ["HepG2"]


def test_encode_dhs_dataset_and_disjoint_halves():
    table = load_encode_dhs()
    assert len(table) == 47872 and table["sequence"].str.len().eq(200).all()
    assert table["cell_type"].value_counts().eq(11968).all()
    assert set(table.loc[table["split"] == "test", "chr"]) == {"chr1"}
    assert set(table.loc[table["split"] == "valid", "chr"]) == {"chr2"}
    train = table[table["split"] == "train"]
    halves = chromosome_halves(train["chr"])
    by_half = train.groupby(halves)["chr"].agg(set)
    assert not (by_half[0] & by_half[1])  # no chromosome in both halves
    assert abs(halves.mean() - 0.5) < 0.05
