"""Raw inputs to graph inputs on the device, with numpy and `tokenizers` only (no torch, no
transformers), exactly as the compiler's adapters preprocess them (checked in the tests).

A client sends central the raw input, packed (`pack`/`unpack`): uint8 pixels, or UTF-8 text with
its lengths. Central relays to the workers (`relay`) what is smallest and cheapest to turn into
graph inputs: the uint8 pixels (4x smaller than normalised float pixels), or the texts' token ids,
2 bytes a token without the padding (smaller than the text, and tokenizing a text cost each device
more than half a millisecond of CPU: central tokenizes it once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cofc.errors import DataError
from cofc.runtime.bundle import Bundle
from cofc.runtime.images import IMAGE_SUFFIXES, image_files, load_image
from cofc.runtime.manifest import ImagePreprocess, Preprocess, TextPreprocess
from cofc.runtime.texts import Text, read_texts
from cofc.runtime.wire import WireError

if TYPE_CHECKING:
    from tokenizers import Encoding

MAX_TEXT_BYTES = 1 << 20
HEAD_CHARS_PER_TOKEN = 6  # the first head tried, in characters a kept token (English: about 4.5)


class Preprocessor:
    """Built from a bundle manifest's preprocessing (the tokenizer file is in the bundle)."""

    def __init__(self, spec: Preprocess, bundle_dir: Path):
        self.spec = spec
        self.kind = spec.kind
        if isinstance(spec, ImagePreprocess):
            self.mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
            self.std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
        else:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(bundle_dir / spec.tokenizer_file))
            self.tokenizer.enable_truncation(max_length=spec.max_length)
            self.tokenizer.enable_padding(length=spec.max_length, pad_id=spec.pad_id, pad_token=spec.pad_token)
        self.pairs = not isinstance(spec, ImagePreprocess) and spec.pair_column is not None

    @property
    def _image(self) -> ImagePreprocess:
        assert isinstance(self.spec, ImagePreprocess), "an image step on a text preprocessor"
        return self.spec

    @property
    def _text(self) -> TextPreprocess:
        assert isinstance(self.spec, TextPreprocess), "a text step on an image preprocessor"
        return self.spec

    @classmethod
    def for_bundle(cls, bundle: Bundle) -> Preprocessor:
        return cls(bundle.manifest.preprocess, bundle.path)

    def read(self, path: Path, text_column: str = "text", pair_column: str | None = None) -> np.ndarray | list[Text]:
        """Raw inputs from the files a user keeps them in. Images: one image file, a folder of
        them (sorted, any depth), or a .npy of uint8 arrays already at the model's size; each file
        is decoded and fitted exactly as the compiler read its data. Texts: a .txt file (one per
        line) or the text column of a CSV/TSV/JSONL file; pairs (a model of text pairs) its text
        and pair columns (the compiler's column name unless `pair_column` names another)."""
        if not isinstance(self.spec, ImagePreprocess):
            return read_texts(path, text_column, (pair_column or self.spec.pair_column) if self.pairs else None)
        image = self.spec.image
        if path.suffix == ".npy":
            try:
                arrays: np.ndarray = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: not a readable .npy file ({exc})") from None
            if arrays.dtype != np.uint8 or arrays.shape[1:] != image.shape:
                raise DataError(
                    f"{path}: expected uint8 images of shape (N, {', '.join(map(str, image.shape))}), "
                    f"got {arrays.dtype}{arrays.shape}"
                )
            return arrays
        files = image_files(path) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
        return np.stack([load_image(f, image) for f in files])

    def __call__(self, raw: np.ndarray | Sequence[Text]) -> dict[str, np.ndarray]:
        if self.kind == "image":
            x = np.asarray(raw, dtype=np.float32) / 255.0
            if x.ndim == 3:
                x = x[:, None]
            return {"pixel_values": np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)}
        enc = self._encode(list(raw))
        return {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        }

    def _encode(self, texts: list[Text]) -> list[Encoding]:
        """The tokenizer's encodings of whole texts, computed from their heads where that is the
        same. Tokenizing costs as much as the text is long, and the truncation comes after: a
        20 Newsgroups post was tokenized whole to keep its first 128 tokens, on every device that
        reads it. A head's encoding is the whole text's when the head ran past the kept
        tokens (some were cut off) and every kept token ends before the head's last space:
        the words before it are split exactly as in the whole text; only the last, maybe cut,
        word can differ. Heads start at HEAD_CHARS_PER_TOKEN characters a kept token and double
        until that holds or the head is the whole text, so a text is tokenized at most about
        twice over the length it needs. Pairs are encoded whole (the longer text of a pair is
        cut first, so a head of either could change which tokens are kept)."""
        if self.pairs:
            if not all(isinstance(t, tuple) and len(t) == 2 for t in texts):
                raise DataError("the model takes pairs of texts; got single texts")
            return self.tokenizer.encode_batch(texts)
        if any(not isinstance(t, str) for t in texts):
            raise DataError("the model takes single texts; got pairs")
        if self.tokenizer.pre_tokenizer is None:  # no word splitting: a cut may change any token
            return self.tokenizer.encode_batch(texts)
        encodings: list[Encoding | None] = [None] * len(texts)
        todo, limit = list(range(len(texts))), HEAD_CHARS_PER_TOKEN * self._text.max_length
        while todo:
            heads = [str(texts[i])[:limit] for i in todo]
            for i, head, enc in zip(todo, heads, self.tokenizer.encode_batch(heads), strict=True):
                if len(head) == len(texts[i]) or _head_holds_every_kept_token(head, enc):
                    encodings[i] = enc
            todo, limit = [i for i in todo if encodings[i] is None], 2 * limit
        return [e for e in encodings if e is not None]  # every one, once `todo` is empty

    # -- on the wire ---------------------------------------------------------------------------
    def pack(self, raw: np.ndarray | Sequence[Text]) -> dict[str, np.ndarray]:
        """Raw inputs as the arrays a request carries (a pair: its two texts one after the other)."""
        if self.kind == "image":
            return {"image": np.ascontiguousarray(raw, dtype=np.uint8)}
        flat = [part for t in raw for part in ((t,) if isinstance(t, str) else t)]
        encoded = [t.encode("utf-8") for t in flat]
        return {
            "utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            "lengths": np.array([len(e) for e in encoded], dtype=np.int64),
        }

    def relay(self, raw: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What central sends its workers for a request whose packed raw input and graph inputs
        (from `unpack`) these are: the pixels as they came, or the real tokens' ids and counts."""
        if self.kind == "image":
            return raw
        counts = inputs["attention_mask"].sum(axis=1)
        ids = inputs["input_ids"][inputs["attention_mask"].astype(bool)]  # right padding: a prefix of each row
        return {
            "token_ids": ids.astype(token_id_dtype(self.tokenizer.get_vocab_size())),
            "token_counts": counts.astype(np.int64),
        }

    def unpack(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Graph inputs from a request's arrays (a packed raw input, or what central relays);
        WireError for anything that does not fit."""
        if "token_ids" in arrays and self.kind == "text":
            return self._tokens(arrays)
        if self.kind == "image":
            image = arrays.get("image")
            if image is None or image.dtype != np.uint8 or image.ndim not in (3, 4):
                raise WireError("bad-input", "expected uint8 images")
            if image.shape[1:] != self._image.image.shape:
                raise WireError("bad-input", f"image shape {image.shape[1:]}, expected {self._image.image.shape}")
            return self(image)
        data, lengths = arrays.get("utf8"), arrays.get("lengths")
        if (
            data is None
            or lengths is None
            or data.dtype != np.uint8
            or lengths.dtype != np.int64
            or data.ndim != 1
            or lengths.ndim != 1
            or len(lengths) == 0
            or (lengths < 0).any()
            or int(lengths.sum()) != len(data)
            or len(data) > MAX_TEXT_BYTES
        ):
            raise WireError("bad-input", "expected utf8 bytes and their lengths")
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        try:
            texts = [bytes(data[a:b]).decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        except UnicodeDecodeError:
            raise WireError("bad-input", "text is not UTF-8") from None
        if not self.pairs:
            return self(texts)
        if len(texts) % 2:
            raise WireError("bad-input", "expected pairs of texts (an even count)")
        return self(list(zip(texts[::2], texts[1::2], strict=True)))

    def _tokens(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, counts = arrays.get("token_ids"), arrays.get("token_counts")
        if (
            ids is None
            or counts is None
            or ids.dtype not in (np.uint16, np.int32)
            or counts.dtype != np.int64
            or ids.ndim != 1
            or counts.ndim != 1
            or len(counts) == 0
            or (counts < 1).any()
            or (counts > self._text.max_length).any()
            or int(counts.sum()) != len(ids)
        ):
            raise WireError("bad-input", f"expected token ids and counts of 1 to {self._text.max_length}")
        if len(ids) and not 0 <= int(ids.min()) <= int(ids.max()) < self.tokenizer.get_vocab_size():
            raise WireError("bad-input", "token ids beyond the vocabulary")
        return _padded(ids, counts, self._text.max_length, self._text.pad_id)


def _padded(ids: np.ndarray, counts: np.ndarray, length: int, pad_id: int) -> dict[str, np.ndarray]:
    mask = np.arange(length)[None, :] < counts[:, None]
    input_ids = np.full((len(counts), length), pad_id, dtype=np.int64)
    input_ids[mask] = ids
    return {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}


def _head_holds_every_kept_token(head: str, enc: Encoding) -> bool:
    """Some kept tokens were cut off, and all the kept ones end before the head's last space (the
    one character every word-splitting pre-tokenizer splits at and no normalizer removes; other
    whitespace such as U+001C is a control character BERT's normalizer deletes, joining words)."""
    last_space = head.rfind(" ")
    kept_ends = [end for (_, end), special in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not special]
    return bool(enc.overflowing) and bool(kept_ends) and max(kept_ends) <= last_space


def token_id_dtype(vocab_size: int) -> type[np.integer]:
    """What central relays token ids as: 2 bytes while the vocabulary fits, else 4."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def packed_request_bytes(
    kind: str, image_shape: Sequence[int] | None = None, max_length: int = 0, vocab_size: int = 0
) -> int:
    """Bytes of one request central relays to a worker: the pixels, or the planned length of
    token ids (`token_id_dtype` of the vocabulary) plus its count. The evaluator's t2 counts these."""
    if kind == "image":
        if image_shape is None:
            raise ValueError("an image request's size needs the image shape")
        return int(np.prod(image_shape))
    return np.dtype(token_id_dtype(vocab_size)).itemsize * max_length + 8
