"""Data as users keep it: ImageFolder trees of image files and CSV/TSV/JSONL texts, read into Splits
with the teacher's class indices; the one-line errors for files that cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cofc.compiler.models.data import Expects, ImageInput, in_teacher_order, load_data, load_image
from cofc.compiler.models.datasets import Dataset, Split
from cofc.compiler.plan import DatasetPlan
from cofc.errors import DataError
from cofc.runtime.images import fit
from cofc.runtime.texts import read_rows

COLOURS = {"bird": (200, 30, 30), "cat": (30, 200, 30), "dog": (30, 30, 200)}
RGB16 = ImageInput(channels=3, size=(16, 16), interpolation="bicubic", crop_pct=0.875)
ANIMALS = Expects("image", ("cat", "dog", "fish", "bird"), RGB16)  # named, in the teacher's own order


def plan(**fields) -> DatasetPlan:
    return DatasetPlan(**{"name": None, "calibration": 1, "validation": 1, "test": None, **fields})


def image_folder(root: Path, parts=("train", "test"), per_class: int = 3) -> Path:
    """Solid-colour PNGs of odd sizes (so every one is scaled and cut), one class per colour, and
    a file that is not an image (skipped, as torchvision skips it)."""
    for part in parts:
        for name, colour in COLOURS.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40 + i, 30), colour).save(folder / f"{i}.png")
            (folder / "notes.txt").write_text("not an image")
    return root


def test_image_folder_reads_every_image_with_its_class(tmp_path):
    data = load_data(plan(image_folder=image_folder(tmp_path / "pets")), ANIMALS)
    assert data.kind == "image" and data.classes == ANIMALS.classes
    for split in (data.train, data.test):
        assert split.inputs.shape == (9, 3, 16, 16) and split.inputs.dtype == np.uint8
        for image, label in zip(split.inputs, split.labels, strict=True):
            colour = COLOURS[ANIMALS.classes[label]]  # the label is the folder's class, by name
            assert np.abs(image.reshape(3, -1).mean(1) - colour).max() < 1
    assert sorted(data.train.labels) == [0] * 3 + [1] * 3 + [3] * 3  # no fish


def test_grey_teacher_gets_grey_arrays(tmp_path):
    grey = Expects("image", ("bird", "cat", "dog"), ImageInput(1, (8, 8)))
    data = load_data(plan(image_folder=image_folder(tmp_path / "pets")), grey)
    assert data.train.inputs.shape == (9, 8, 8)
    expected = {label: round(0.299 * r + 0.587 * g + 0.114 * b) for label, (r, g, b) in enumerate(COLOURS.values())}
    for image, label in zip(data.train.inputs, data.train.labels, strict=True):
        assert abs(int(image[4, 4]) - expected[label]) <= 1


def test_resize_and_crop_are_timms_evaluation_transform(tmp_path):
    """The array the compiler (and the device side) normalises is exactly what timm's own eval
    transform feeds a model: scale the short side to floor(32 / 0.875) = 36, bicubic, cut the centre."""
    import torch
    from timm.data import create_transform

    noise = np.random.default_rng(0).integers(0, 256, size=(37, 50, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    image = ImageInput(3, (32, 32), "bicubic", 0.875)
    ours = load_image(tmp_path / "noise.png", image)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    timms = create_transform(input_size=(3, 32, 32), interpolation="bicubic", crop_pct=0.875, mean=mean, std=std)
    want = timms(Image.open(tmp_path / "noise.png").convert("RGB"))
    got = (torch.from_numpy(ours).float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert ours.shape == (3, 32, 32)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert fit(Image.fromarray(noise[:32, :32]), ImageInput(3, (32, 32))).tobytes() == noise[:32, :32].tobytes()


def test_image_folder_without_test_holds_out_a_fixed_fraction(tmp_path):
    root = image_folder(tmp_path / "pets", parts=("train",), per_class=10)
    a = load_data(plan(image_folder=root, held_out=0.2), ANIMALS)
    b = load_data(plan(image_folder=root, held_out=0.2), ANIMALS)
    assert (len(a.train), len(a.test)) == (24, 6)
    assert np.array_equal(a.test.inputs, b.test.inputs) and np.array_equal(a.test.labels, b.test.labels)


def test_unnamed_teacher_numbers_class_folders_in_sorted_order(tmp_path):
    unnamed = Expects("image", ("0", "1", "2", "3"), RGB16)
    data = load_data(plan(image_folder=image_folder(tmp_path / "pets")), unnamed)
    assert data.classes == ("bird", "cat", "dog", "3")
    colours = {
        label: tuple(image.reshape(3, -1).mean(1).round())
        for image, label in zip(data.test.inputs, data.test.labels, strict=True)
    }
    assert colours == {0: (200, 30, 30), 1: (30, 200, 30), 2: (30, 30, 200)}


SENTIMENT = Expects("text", ("negative", "neutral", "positive"))
CSV = (
    '\ufeffid,text,label\n1,"Great, really great",positive\n2,"two\nlines",negative\n'
    "3,fine,neutral\n4,bad,negative\n5,ok,neutral\n"
)


@pytest.mark.parametrize(
    "name,content",
    [
        ("reviews.csv", CSV),
        (
            "reviews.tsv",
            CSV.replace(",", "\t")
            .replace('"Great\t really great"', "Great, really great")
            .replace('"two\nlines"', "two lines"),
        ),
        (
            "reviews.jsonl",
            "\n".join(
                [
                    '{"text": "Great, really great", "label": "positive", "id": 1}',
                    '{"text": "two\\nlines", "label": "negative"}',
                    "",
                    '{"text": "fine", "label": "neutral"}',
                    '{"text": "bad", "label": "negative"}',
                    '{"text": "ok", "label": "neutral"}',
                ]
            ),
        ),
    ],
)
def test_text_files_read_with_labels_by_the_teachers_names(name, content, tmp_path):
    (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / f"test{Path(name).suffix}").write_text(content, encoding="utf-8")
    data = load_data(plan(text_file=tmp_path / name, test_file=tmp_path / f"test{Path(name).suffix}"), SENTIMENT)
    assert data.kind == "text" and data.classes == SENTIMENT.classes
    assert data.train.inputs[0] == "Great, really great" and data.train.inputs[2] == "fine"
    assert data.train.labels.tolist() == [2, 0, 1, 0, 1] == data.test.labels.tolist()


def test_named_columns_and_a_held_out_test_fraction(tmp_path):
    rows = "\n".join(f"{i}\tsentence number {i}\t{i % 2}" for i in range(50))
    (tmp_path / "data.tsv").write_text("n\tbody\ttopic\n" + rows + "\n", encoding="utf-8")
    unnamed = Expects("text", ("0", "1", "2"))
    source = plan(text_file=tmp_path / "data.tsv", text_column="body", label_column="topic", held_out=0.3)
    a, b = load_data(source, unnamed), load_data(source, unnamed)
    assert (len(a.train), len(a.test)) == (35, 15) and a.test.inputs == b.test.inputs
    assert all(label == int(text.split()[-1]) % 2 for text, label in zip(a.test.inputs, a.test.labels, strict=True))


def test_built_in_data_set_is_relabelled_by_the_teachers_names():
    data = Dataset("toy", "text", ("acq", "crude"), Split(["a", "c"], np.array([0, 1])), Split(["c"], np.array([1])))
    moved = in_teacher_order(data, Expects("text", ("crude", "earn", "acq")))
    assert moved.classes == ("crude", "earn", "acq") and moved.train.labels.tolist() == [2, 0]
    assert in_teacher_order(data, Expects("text", ("0", "1"))) is data


def test_built_in_images_of_another_size_are_refused():
    with pytest.raises(DataError, match="mnist-5k: images are 28x28; the teacher takes 3x16x16"):
        load_data(plan(name="mnist-5k"), Expects("image", tuple("0123456789"), RGB16))


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# (file name, content, words of the error after the file's name)
BAD_TEXTS = [
    ("t.csv", "body,label\nhi,positive\n", "t.csv: no column 'text' (columns: body, label); set dataset.text_column"),
    (
        "t.csv",
        "text,label\nhi,positive\nbye,angry\n",
        "t.csv line 3: label 'angry' is not one of the teacher's classes",
    ),
    ("t.csv", "text,label\ncafé,positive\n".encode("latin-1"), "t.csv: not UTF-8 text (byte 0xe9 at offset 14)"),
    ("t.csv", "", "t.csv: empty file"),
    ("t.csv", "text,label\n", "t.csv: no rows below the header"),
    ("t.csv", "text,label\nhi\n", "t.csv line 2: the row's fields do not match the header's 2 columns"),
    ("t.csv", "text,label\nhi,\n", "t.csv line 2: empty 'label'"),
    ("t.jsonl", '{"text": "hi", "label": "positive"}\n[1, 2]\n', "t.jsonl line 2: not a JSON object"),
    ("t.jsonl", '{"text": "hi"}\n', "t.jsonl line 1: no 'label' field (fields: text)"),
    ("t.jsonl", '{"text": 3, "label": "positive"}\n', "t.jsonl line 1: 'text' is not a string"),
    ("t.txt", "hi\tpositive\n", "t.txt: unknown text file type '.txt'"),
]


@pytest.mark.parametrize("name,content,words", BAD_TEXTS, ids=[w.split(": ", 1)[1][:30] for *_, w in BAD_TEXTS])
def test_bad_text_file_is_one_line_naming_it(name, content, words, tmp_path):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        load_data(plan(text_file=path), SENTIMENT)
    assert str(info.value).startswith(str(tmp_path)) and words in str(info.value) and "\n" not in str(info.value)


def test_integer_label_outside_an_unnamed_head_is_refused(tmp_path):
    path = _write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 7}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 2: label '7' is outside the teacher's 3 classes \(0..2\)"):
        load_data(plan(text_file=path), Expects("text", ("0", "1", "2")))


def test_bad_image_folders_are_one_line_naming_the_folder_or_file(tmp_path):
    root = image_folder(tmp_path / "pets")
    (root / "test" / "cat" / "3.png").write_bytes(b"\x89PNG but then nothing")
    with pytest.raises(DataError, match=r"test/cat/3.png: not a readable image"):
        load_data(plan(image_folder=root), ANIMALS)
    (root / "test" / "cat" / "3.png").unlink()
    (root / "train" / "cow").mkdir()
    with pytest.raises(DataError, match=r"train/cow: empty class folder"):
        load_data(plan(image_folder=root), ANIMALS)
    Image.new("RGB", (4, 4)).save(root / "train" / "cow" / "0.png")
    with pytest.raises(DataError, match=r"train/cow: class folder label 'cow' is not one of the teacher's classes"):
        load_data(plan(image_folder=root), ANIMALS)
    with pytest.raises(DataError, match=r"no train/ folder"):
        load_data(plan(image_folder=root / "train"), ANIMALS)
    with pytest.raises(DataError, match=r"an image folder, but the teacher takes texts"):
        load_data(plan(image_folder=root), SENTIMENT)


def test_rows_remember_their_lines(tmp_path):
    rows = read_rows(_write(tmp_path / "t.csv", 'text,label\n"a\nb",x\nc,y\n'), "text", "label")
    assert rows.lines == [3, 4] and rows.texts == ["a\nb", "c"]


@pytest.mark.parametrize(
    "dataset,given",
    [
        ("{name: mnist-5k}", {"name"}),
        ("{image_folder: pets}", {"image_folder"}),  # pets/ has test/: held_out does not apply
        ("{image_folder: pets/train-only, held_out: 0.3}", {"image_folder", "held_out"}),
        (
            "{text_file: r.csv, test_file: r.csv, text_column: body}",
            {"text_file", "test_file", "text_column", "label_column"},
        ),
        ("{text_file: r.jsonl}", {"text_file", "text_column", "label_column", "held_out"}),
    ],
)
def test_the_plan_a_build_keeps_loads_again_with_the_same_data(dataset, given, tmp_path):
    """A build keeps its plan (plan_yaml, every path absolute) and `cofc bench` reads it back: only
    the fields that apply to the data source are written, so the copy passes the checks that
    refuse a field the source would ignore."""
    from cofc.compiler.plan import load_plan, plan_yaml

    image_folder(tmp_path / "pets")
    image_folder(tmp_path / "pets" / "train-only", parts=("train",))
    (tmp_path / "r.csv").write_text("body,label\na,x\n")
    (tmp_path / "r.jsonl").write_text('{"text": "a", "label": "x"}\n')
    (tmp_path / "p.json").write_text('{"rows": [{"ms": 1}]}')
    (tmp_path / "plan.yaml").write_text(
        "name: p\nteacher: {checkpoint: p.json}\n"
        f"dataset: {dataset[:-1]}, calibration: 1, validation: 1}}\n"
        "devices: [{name: a, profile: p.json, memory_mb: 1, max_mflops: 1, link_mbps: 1, central: true}]\n"
        "objective: {delta: 1, initial: 1, iterations: 0}\noutput: out\n"
    )
    original = load_plan(tmp_path / "plan.yaml")
    kept = tmp_path / "kept" / "plan.yaml"
    kept.parent.mkdir()
    kept.write_text(plan_yaml(original))
    again = load_plan(kept)
    assert again.dataset == original.dataset
    written = {k.removeprefix("dataset.") for k in again.lines if k.startswith("dataset.")}
    assert written == given | {"calibration", "validation"}
