"""A device reads raw inputs from the files users keep them in, without torch, exactly as the
compiler read its data: image files scaled and cut as the manifest says, CSV/TSV/JSONL text
columns, .txt lines; and a bad file is one line naming it, before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from cofc.compiler.models.adapters._hf import resolve_source
from cofc.compiler.models.data import Expects, load_data
from cofc.compiler.models.datasets import load_dataset
from cofc.compiler.plan.loader import DatasetPlan
from cofc.errors import DataError
from cofc.runtime.images import ImageInput
from cofc.runtime.manifest import ImagePreprocess, TextPreprocess
from cofc.runtime.preprocess import Preprocessor, packed_request_bytes
from cofc.runtime.texts import read_texts
from cofc.runtime.wire import WireError
from tests.helpers import TOKENIZER, run_cofc

IMAGE = ImageInput(3, (32, 32), "bicubic", 0.875)


def _image_folder(root) -> None:
    """Two classes of RGB PNGs of another size and aspect (so each is scaled, then cut)."""
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for name in ("cat", "dog"):
            (root / part / name).mkdir(parents=True)
            for k in range(3):
                pixels = rng.integers(0, 256, size=(45, 60, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / part / name / f"{k}.png")


def test_image_folder_reads_as_the_compiler_read_it(tmp_path):
    _image_folder(tmp_path / "images")
    plan = DatasetPlan(None, 2, 2, None, image_folder=tmp_path / "images")
    compiler = load_data(plan, Expects("image", ("cat", "dog"), IMAGE)).test.inputs
    device = Preprocessor(ImagePreprocess((0.5,) * 3, (0.25,) * 3, IMAGE), tmp_path)
    read = device.read(tmp_path / "images" / "test")
    assert read.shape == (6, 3, 32, 32) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, compiler)
    np.testing.assert_array_equal(device.read(tmp_path / "images" / "test" / "cat" / "0.png"), compiler[:1])
    np.save(tmp_path / "arrays.npy", compiler)
    np.testing.assert_array_equal(device.read(tmp_path / "arrays.npy"), compiler)
    pixels = device(read)["pixel_values"]
    np.testing.assert_allclose(pixels, (compiler / 255.0 - 0.5) / 0.25, atol=1e-6)


@pytest.mark.parametrize(
    "name,content",
    [
        ("a.txt", "first text\n\nsecond, with a comma\n"),
        ("a.csv", 'body,label\nfirst text,x\n"second, with a comma",y\n'),
        ("a.tsv", "body\nfirst text\nsecond, with a comma\n"),
        ("a.jsonl", json.dumps({"body": "first text"}) + "\n" + json.dumps({"body": "second, with a comma"}) + "\n"),
    ],
)
def test_texts_are_read_from_lines_or_a_named_column(name, content, tmp_path):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert read_texts(tmp_path / name, "body") == ["first text", "second, with a comma"]


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("a.csv", "text,label\nhi,x\n", "no column 'body' (columns: text, label); set --text-column"),
        ("a.txt", "\n \n", "a.txt: empty file"),
        ("a.jsonl", '{"body": 3}\n', "line 1: 'body' is not a string"),
        ("a.xml", "<t/>", "unknown text file type '.xml' (use .txt, .csv, .tsv, .jsonl)"),
    ],
)
def test_bad_text_files_are_one_line_naming_them(name, content, words, tmp_path):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_texts(tmp_path / name, "body")


@pytest.mark.slow  # `cofc run` in a new process, on the session's built plan
@pytest.mark.parametrize(
    "name,content,words",
    [
        ("broken.png", b"not a png", "not a readable image"),
        ("wrong.npy", None, "expected uint8 images of shape (N, 28, 28)"),
        ("broken.npy", b"\x93NUMPY garbage", "not a readable .npy file"),
        ("empty", "folder", "no image files"),
    ],
)
def test_cofc_run_refuses_a_bad_input_file_in_one_line(name, content, words, built, tmp_path):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is None:
        np.save(path, np.zeros((2, 32, 32), np.uint8))
    else:
        path.write_bytes(content)
    result = run_cofc("run", "--bundle", str(built / "bundle" / "orin"), "--input", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cofc: error: {path}") and words in lines[0], result.stderr


def _trained_tokenizers(tmp_path, texts: list[str]) -> dict[str, str]:
    """A byte-level BPE (GPT-2, RoBERTa) and a Metaspace unigram (SentencePiece) tokenizer, trained
    here on the texts, beside the MiniLM WordPiece one: the three ways words are split."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    files = {"wordpiece": str(Path(resolve_source(TOKENIZER)) / "tokenizer.json")}
    for name, model, pre, trainer in [
        (
            "bytelevel",
            models.BPE(),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
            trainers.BpeTrainer(vocab_size=1000, special_tokens=["<pad>"]),
        ),
        (
            "metaspace",
            models.Unigram(),
            pre_tokenizers.Metaspace(),
            trainers.UnigramTrainer(vocab_size=1000, special_tokens=["<pad>", "<unk>"], unk_token="<unk>"),
        ),
    ]:
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre
        tokenizer.train_from_iterator(texts, trainer)
        files[name] = str(tmp_path / f"{name}.json")
        tokenizer.save(files[name])
    return files


@pytest.mark.parametrize("max_length", [16, 128])
def test_a_texts_head_gives_the_whole_texts_tokens(max_length, tmp_path):
    """Devices tokenize a head of each text where that keeps the same tokens: checked against the
    tokenizer on whole texts, for 20 Newsgroups posts and texts made to cut a word at every head
    length, end a head in spaces, join words across a control character or have no space, for
    WordPiece, byte-level BPE and Metaspace tokenizers."""
    posts = list(load_dataset("20newsgroups").test.inputs[:1500])
    made = ["x " * n + "supercalifragilisticexpialidocious" * 9 + " tail" for n in range(0, 400, 7)]
    made += [
        "word " * 300,
        "word  " * 300,
        "a" * 5000,
        "ab\x1ccd " * 500,
        "Ünïcödé ÀÉÎ 日本語のテキスト " * 200,
        " " * 3000 + "late words",
        "short",
    ]
    for name, file in _trained_tokenizers(tmp_path, posts[:500]).items():
        spec = TextPreprocess(max_length, Path(file).name, 0, "[PAD]" if name == "wordpiece" else "<pad>")
        device = Preprocessor(spec, Path(file).parent)
        whole = Tokenizer.from_file(file)
        whole.enable_truncation(max_length=max_length)
        whole.enable_padding(length=max_length, pad_id=0, pad_token=spec.pad_token)
        expected = whole.encode_batch(posts + made)
        got = device(posts + made)
        np.testing.assert_array_equal(got["input_ids"], [e.ids for e in expected], err_msg=name)
        np.testing.assert_array_equal(got["attention_mask"], [e.attention_mask for e in expected], err_msg=name)


def test_central_relays_token_ids_that_give_the_workers_the_same_inputs():
    """Central tokenizes a text once and relays the real tokens' ids: a worker pads them back into
    exactly the inputs central computed, from fewer bytes than the text; anything else is refused."""
    spec = TextPreprocess(128, "tokenizer.json", 0, "[PAD]")
    prep = Preprocessor(spec, Path(resolve_source(TOKENIZER)))
    texts = list(load_dataset("20newsgroups").test.inputs[:300]) + ["short", "a " * 400]
    packed = prep.pack(texts)
    inputs = prep.unpack(packed)
    relayed = prep.relay(packed, inputs)
    assert relayed["token_ids"].dtype == np.uint16  # a 30522-word vocabulary
    assert relayed["token_ids"].nbytes + relayed["token_counts"].nbytes < packed["utf8"].nbytes
    for key, value in prep.unpack(relayed).items():
        np.testing.assert_array_equal(value, inputs[key], err_msg=key)

    ids, counts = relayed["token_ids"][:5], np.array([2, 3], np.int64)
    for bad in [
        {"token_ids": ids.astype(np.uint8), "token_counts": counts},
        {"token_ids": ids, "token_counts": np.array([2, 2], np.int64)},  # counts != ids
        {"token_ids": np.array([30522], np.uint16), "token_counts": np.array([1], np.int64)},
        {"token_ids": ids[:0], "token_counts": np.array([0], np.int64)},
        {"token_ids": np.zeros(129, np.uint16), "token_counts": np.array([129], np.int64)},
    ]:
        with pytest.raises(WireError, match="bad-input"):
            prep.unpack(bad)


@pytest.mark.parametrize("words", [30522, 70000])
def test_the_planned_request_bytes_are_what_central_relays_for_a_full_length_text(words, tmp_path):
    """The evaluator's t2 counts a request at the bytes central really relays for a text of the
    planned length: 2 bytes a token id for MiniLM's vocabulary, 4 past 65,536 words."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    if words == 30522:
        folder, vocab = Path(resolve_source(TOKENIZER)), words
    else:
        tokenizer = Tokenizer(
            models.WordLevel({"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, words)}}, unk_token="[UNK]")
        )
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.save(str(tmp_path / "tokenizer.json"))
        folder, vocab = tmp_path, tokenizer.get_vocab_size()
    prep = Preprocessor(TextPreprocess(128, "tokenizer.json", 0, "[PAD]"), folder)
    packed = prep.pack([" ".join(f"w{i}" for i in range(60000, 60300))])
    relayed = prep.relay(packed, prep.unpack(packed))
    assert relayed["token_counts"].tolist() == [128]
    sent = relayed["token_ids"].nbytes + relayed["token_counts"].nbytes
    assert sent == packed_request_bytes("text", max_length=128, vocab_size=vocab) == (264 if words < 1 << 16 else 520)
