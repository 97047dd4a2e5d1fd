"""Tasks on two texts a sample (MNLI, QQP): files with a pair column, read the same by the compiler
and by `cofc run --input`, tokenized by the device exactly as by the compiler, and carried whole
over the wire."""

from __future__ import annotations

import numpy as np
import pytest

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.data import Expects
from cofc.compiler.models.data.texts import read_text_files
from cofc.errors import CofcError, DataError
from cofc.runtime.manifest import TextPreprocess
from cofc.runtime.preprocess import Preprocessor
from tests.models.test_t5 import small_t5_record

PAIRS = [
    ("a man is playing a guitar", "someone makes music"),
    ("oil prices rose sharply " * 30, "prices fell"),  # the long first text is the one cut
    ("wheat exports fell", "Ünïcödé, PUNCTUATION!  and   spaces " * 30),
]


def _csv(tmp_path, rows=PAIRS):
    path = tmp_path / "pairs.csv"
    lines = ["premise,hypothesis,label"] + [f'"{a}","{b}",{i % 2}' for i, (a, b) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record(family: str) -> dict:
    record = small_t5_record()
    record["family"] = family
    record["preprocess"]["pair_column"] = "hypothesis"
    return record


def _device(record: dict) -> Preprocessor:
    """The device's torch-free preprocessing, as the bundle stage writes it for this teacher."""
    from cofc.compiler.export.bundle import device_preprocess
    from cofc.compiler.models.teacher import Teacher

    prep, tokenizer = device_preprocess(Teacher.from_record(record))
    assert isinstance(prep, TextPreprocess) and prep.pair_column == "hypothesis"
    return Preprocessor(prep, tokenizer.parent)


def test_a_pair_column_reads_pairs_in_the_compiler_and_on_the_device(tmp_path):
    path = _csv(tmp_path)
    data = read_text_files(path, path, "premise", "label", Expects("text", ("0", "1")), 0.2, "hypothesis")
    assert data.train.inputs == [(a, b) for a, b in PAIRS]
    device = _device(_record("t5"))
    assert device.read(path, "premise") == [(a, b) for a, b in PAIRS]


def test_device_tokenizes_pairs_as_the_compiler():
    """[CLS] a [SEP] b [SEP] with the longer text cut first, bit for bit (the template and the
    truncation are the tokenizer's, on both sides)."""
    record = _record("t5")
    want = get_adapter("t5").preprocess(record, PAIRS)
    sep = want["input_ids"][0].tolist().count(102)  # [SEP] of MiniLM's vocabulary
    assert sep == 2
    got = _device(record)(PAIRS)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[name], want[name].numpy())


def test_pairs_survive_the_wire():
    device = _device(_record("t5"))
    packed = device.pack(PAIRS[:2])
    got, want = device.unpack(packed), device(PAIRS[:2])
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    odd = {"utf8": packed["utf8"][: packed["lengths"][0]], "lengths": packed["lengths"][:1]}
    from cofc.runtime.wire import WireError

    with pytest.raises(WireError, match="pairs"):
        device.unpack(odd)


def test_single_texts_to_a_pair_model_are_refused_in_one_line(tmp_path):
    record = _record("t5")
    with pytest.raises(CofcError, match="pairs"):
        get_adapter("t5").preprocess(record, ["one text"])
    with pytest.raises(DataError, match="pairs"):
        _device(record)(["one text"])
    txt = tmp_path / "texts.txt"
    txt.write_text("one\ntwo\n")
    with pytest.raises(DataError, match="'hypothesis' column"):
        _device(record).read(txt)
    with pytest.raises(DataError, match="no column 'other'.*--pair-column"):
        _device(record).read(_csv(tmp_path), "premise", "other")


def test_a_pair_teacher_in_a_plan_without_a_pair_column_is_refused_at_the_field(tmp_path):
    """A teacher file trained on pairs, and a plan whose data names one text column: the plan is
    refused at dataset.pair_column rather than the teacher being fed single texts."""
    from cofc.compiler.models.teacher import save_teacher, teacher_from_plan
    from cofc.compiler.plan import load_plan
    from cofc.errors import PlanError
    from tests.models.test_user_teachers import write_plan

    save_teacher(tmp_path / "t.pt", _record("t5"))
    _csv(tmp_path)
    plan = write_plan(tmp_path, "{checkpoint: t.pt}")
    data = "{text_file: pairs.csv, text_column: premise, calibration: 10, validation: 10}"
    plan.write_text(plan.read_text().replace("{name: mnist-5k, calibration: 10, validation: 10}", data))
    with pytest.raises(PlanError, match="dataset.pair_column.*pairs of texts"):
        teacher_from_plan(load_plan(plan))
    plan.write_text(plan.read_text().replace("text_column: premise,", "text_column: premise, pair_column: hypothesis,"))
    assert teacher_from_plan(load_plan(plan)).record["preprocess"]["pair_column"] == "hypothesis"
