"""``inspector``: the command line over the engine.

    inspector                       open the desktop application
    inspector gui [PATH]            open a project or an image folder in the application
    inspector train DATA_DIR -o MODEL ...
    inspector predict MODEL PATH... -o OUT_DIR
    inspector update MODEL --add-normal PATH... -o NEW_MODEL
    inspector watch MODEL DIR [-o OUT_DIR] [--project PROJECT]
    inspector evaluate DATASET ...
    inspector advise DATA_DIR       which method and alignment fit these good images
    inspector benchmark ...
    inspector methods [NAME]        the methods, and a method's options

A user's mistake (missing folder, no images, bad weights or model file) prints one line and
exits with status 2; Ctrl+C cancels cleanly (status 130).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .terminal import TerminalProgress

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


def _job(args):
    from .core.jobs import Job
    progress = TerminalProgress(enabled=not getattr(args, "quiet", False))
    return Job(progress), progress


# Command-line flags that set a method option shared by several methods: flag → option name.
SHARED_OPTION_FLAGS = {"coreset": "coreset_ratio", "index": "index"}


def _methods_with(option: str) -> str:
    from .core.methods import catalog
    return ", ".join(m.label for m in catalog.methods() if m.has_option(option))


def _option_default(option: str):
    from .core.methods import catalog
    return next(m.option(option).default for m in catalog.methods() if m.has_option(option))


def _method_help() -> str:
    from .core.methods import catalog
    return ("; ".join(f"{m.name}: {m.label}, {m.description}" for m in catalog.methods())
            + f" (default {catalog.DEFAULT_METHOD}; 'inspector methods NAME' lists its options)")


def _add_method_args(p: argparse.ArgumentParser) -> None:
    """--method, --coreset, --index and --option: the same for train, evaluate and benchmark."""
    from .core.methods import catalog
    from .core.choices import INDEX_KINDS
    p.add_argument("--method", default=catalog.DEFAULT_METHOD, choices=catalog.names(), help=_method_help())
    p.add_argument("--coreset", type=float, default=None, metavar="RATIO",
                   help=f"memory-bank fraction kept, for {_methods_with('coreset_ratio')} "
                        f"(default {_option_default('coreset_ratio')}); "
                        "the same as --option coreset_ratio=RATIO")
    p.add_argument("--index", choices=list(INDEX_KINDS), default=None,
                   help=f"nearest-neighbour search, for {_methods_with('index')} (default {_option_default('index')}: "
                        "approximate maps, exact image scores, 10-20x faster than exact with WRN-50; "
                        "see README, 'Index')")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --option k_channels=100 (repeatable; 'inspector methods "
                        "NAME' lists a method's options, their defaults and ranges)")


def _add_model_args(p: argparse.ArgumentParser, crop_default: Optional[int]) -> None:
    from .core.backbone_specs import DEFAULT_BACKBONE, REGISTRY, WEIGHTS_ENV
    from .core.choices import INTERPOLATIONS
    _add_method_args(p)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(REGISTRY),
                   help=f"feature extractor (default {DEFAULT_BACKBONE})")
    p.add_argument("--weights", metavar="FILE",
                   help=f"ImageNet weights file for the backbone (else ${WEIGHTS_ENV}, else torchvision's cache)")
    p.add_argument("--random-weights", action="store_true",
                   help="untrained backbone: for speed measurements only, useless for detection")
    p.add_argument("--resize", type=int, default=256, help="images are resized to this square (default 256)")
    p.add_argument("--crop", type=int, default=crop_default,
                   help="center crop after resizing" + (f" (default {crop_default})" if crop_default else
                                                        " (default: none, the whole image)"))
    p.add_argument("--resize-filter", choices=list(INTERPOLATIONS), default="antialias",
                   help="resizing: antialiased when shrinking, as torchvision and anomalib (default), "
                        "or plain bilinear (see RESULTS.md, 'Preprocessing')")
    p.add_argument("--align", choices=["none", "translation", "rigid"], default="none",
                   help="align each image to a reference built from the training images before scoring "
                        "(default none; 'inspector advise DATA' measures whether it helps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def method_options(args) -> dict:
    """The method options the command line asks for: the shared flags (--coreset, --index) and
    every --option, parsed and checked once by the method catalog."""
    from .core.errors import InspectorError
    from .core.methods import catalog
    info = catalog.get(args.method)
    given = {}
    for flag, name in SHARED_OPTION_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if not info.has_option(name):
            raise InspectorError(f"--{flag} does not apply to {info.label} (it is for {_methods_with(name)})")
        given[name] = value
    return catalog.parse_options(args.method, args.option, given)


def _settings(args, options: Optional[dict] = None, **extra):
    from .core.pipeline.training import TrainSettings
    options = method_options(args) if options is None else options
    return TrainSettings(method=args.method, backbone=args.backbone, weights=args.weights,
                         random_weights=args.random_weights, resize=args.resize, crop=args.crop,
                         interpolation=args.resize_filter, align=args.align,
                         seed=args.seed, device=args.device, options=options, **extra)


def cmd_train(args) -> int:
    from .core.datasets import training_images
    from .core.pipeline.holdout import MIN_IMAGES_FOR_THRESHOLDS, threshold_caveat
    from .core.images import describe_skipped
    from .core.modelfile import check_writable, save_model
    from .core.pipeline.training import train_model
    from .core.errors import InspectorError
    from .core.methods import catalog
    options = method_options(args)          # a mistake in the options first: it comes alone
    check_writable(args.output)         # a read-only folder is said now, not after the training
    extra = {}
    if args.anomalies:
        from .core.methods.apc import anomalies_from
        extra["anomalies"] = anomalies_from(args.anomalies, args.masks)
        info = catalog.get(args.method)
        if not info.needs_anomalies:
            users = ", ".join(m.label for m in catalog.methods() if m.needs_anomalies)
            print(f"note: --anomalies is used by {users} only, not by {info.label}", file=sys.stderr)
    elif args.masks:
        raise InspectorError("--masks needs --anomalies")
    paths = training_images(args.data_dir)
    settings = _settings(args, options, threshold=args.threshold, **extra)
    job, bar = _job(args)
    try:
        result = train_model(paths, settings, job)
        out = save_model(result.model, args.output)
    finally:
        bar.close()
    if result.skipped:
        print(describe_skipped(result.skipped), file=sys.stderr)
    m = result.model
    print(f"trained {m.method} on {result.n_train} images in {result.seconds:.1f} s -> {out}")
    not_aligned = m.meta["training"].get("not_aligned") or []
    if not_aligned:
        print(f"note: {len(not_aligned)} training image(s) could not be aligned to the reference and were used "
              f"as taken, e.g. {not_aligned[0][0]} ({not_aligned[0][1]})", file=sys.stderr)
    if math.isfinite(m.image_threshold.value):
        print(f"image threshold {m.image_threshold.value:.4g} ({m.image_threshold.detail})")
        print(f"pixel threshold {m.pixel_threshold.value:.4g} ({m.pixel_threshold.detail})")
        caveat = threshold_caveat(result.n_train)
        if caveat:
            sys.stdout.flush()      # after the figures it qualifies, also when both go to one file
            print(f"note: {caveat}", file=sys.stderr)
    else:
        print(f"no thresholds: under {MIN_IMAGES_FOR_THRESHOLDS} images, none can be held out to set them; "
              "predict will give scores and maps but no verdicts (add images, or pass predict --threshold VALUE)")
    return 0


def _load_for_inspection(args):
    """The model of ``predict`` / ``watch``, with ``--threshold`` applied; warns when it has none."""
    from .core.modelfile import load_model
    from .core.thresholds import manual
    model = load_model(args.model, weights=args.weights)
    if args.threshold is not None:
        model.image_threshold = manual(args.threshold)
    if not math.isfinite(model.image_threshold.value):
        print(f"warning: {args.model} has no image threshold (no normal images were held out "
              "from its training to set one): scores and maps are written, verdicts are not. "
              "Give one with --threshold VALUE.", file=sys.stderr)
    return model


def _list_skipped(skipped, csv_path, limit: int = 20) -> None:
    if not skipped:
        return
    print(f"skipped {len(skipped)} input(s):", file=sys.stderr)
    for path, reason in skipped[:limit]:
        print(f"  {path}: {reason}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"  ... and {len(skipped) - limit} more: every one is in {csv_path} (status column)", file=sys.stderr)


def cmd_predict(args) -> int:
    if getattr(args, "ray", None) is not None or getattr(args, "ray_actors", None) is not None:
        from .cluster.command import predict_on_ray_command
        return predict_on_ray_command(args)
    from .core.datasets import expand_inputs
    from .core.pipeline.inspect import DEFAULT_BATCH_SIZE, inspect_stream
    from .core.pipeline.outputs import OutputError, ResultsFolder
    model = _load_for_inspection(args)
    unset = not math.isfinite(model.image_threshold.value)
    inputs = expand_inputs(args.paths)
    out = ResultsFolder(args.output, Path(args.model).name, model.pixel_threshold.value)
    job, bar = _job(args)
    skipped, n_ok, n_anomalous, not_aligned = [], 0, 0, []
    try:
        for r in inspect_stream(model, inputs, job, batch_size=args.batch_size or DEFAULT_BATCH_SIZE):
            out.add_later(r)
            if r.ok:
                n_ok += 1
                n_anomalous += r.prediction.is_anomalous
                if r.prediction.aligned is False:
                    not_aligned.append(r.path)
            else:
                skipped.append((r.path, r.reason))
    except OutputError:
        out.discard()
        raise
    finally:
        bar.close()
        out.finish()          # after a cancel too: the rows done so far (a no-op after discard)
    _list_skipped(skipped, out.csv_path)
    if not_aligned:
        print(f"note: {len(not_aligned)} image(s) could not be aligned to the model's reference and were scored "
              f"as taken (see the 'note' column), e.g. {not_aligned[0]}", file=sys.stderr)
    verdicts = "no verdicts (no image threshold)" if unset else f"{n_anomalous} flagged anomalous"
    print(f"{n_ok} image(s) inspected, {verdicts}, {len(skipped)} skipped; results in {out.csv_path}")
    if n_ok == 0:
        print("inspector: error: none of the inputs could be inspected", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def cmd_update(args) -> int:
    import os
    from .core.datasets import expand_inputs
    from .core.errors import InspectorError
    from .core.images import describe_skipped
    from .core.modelfile import load_model, save_model
    from .core.pipeline.update import add_normal_images
    parent, out = Path(args.model), Path(args.output)
    if out.resolve() == parent.resolve() or (out.exists() and parent.exists() and os.path.samefile(out, parent)):
        raise InspectorError(f"-o must name a new file: {out} is the model being updated, which stays as it is "
                             "(the update is a new version beside it)")
    paths = expand_inputs(args.add_normal)
    model = load_model(parent, weights=args.weights)
    job, bar = _job(args)
    try:
        result = add_normal_images(model, parent, paths, job)
        written = save_model(result.model, out)
    finally:
        bar.close()
    if result.skipped:
        print(describe_skipped(result.skipped), file=sys.stderr)
    if result.known:
        print(f"left out {len(result.known)} image(s) the model learnt in an earlier update: "
              + ", ".join(p.name for p in result.known[:5]) + (" ..." if len(result.known) > 5 else ""),
              file=sys.stderr)
    c = result.change
    grew = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in c.items() if isinstance(v, (int, float)))
    version = result.model.meta["lineage"]["version"]
    print(f"added {len(result.added)} normal image(s) to {parent.name} in {result.seconds:.1f} s ({grew}) "
          f"-> {written} (version {version})")
    print(f"thresholds: {result.thresholds}")
    return 0


def cmd_watch(args) -> int:
    import signal
    from .core.errors import DatasetError, InspectorError
    from .core.jobs import Job
    from .core.pipeline.outputs import WATCH_COLUMNS, ResultsFolder, Sorter, json_line, now_text, result_row
    from .core.pipeline.watch import FolderWatcher, watch_inspect
    from .core.thresholds import manual
    if not args.output and not args.project:
        raise InspectorError("give -o OUT_DIR (results.csv and overlays) and/or --project PROJECT for the results")
    if args.move and not args.sort_into:
        raise InspectorError("--move needs --sort-into FOLDER")
    if args.move and args.project:
        raise InspectorError("--move with --project would leave the project pointing at files that moved: "
                             "sort by copying (without --move)")
    folder = Path(args.folder).absolute()
    if not folder.is_dir():
        raise DatasetError(f"folder not found: {folder}")
    project = recorder = out = watcher = None
    model_file = Path(args.model)
    try:
        if args.project:                  # this process is the project's owner for the run
            from .project.store import Project
            from .project.watch_results import WatchRecorder, find_model
            project = Project.open(args.project)
            row = find_model(project, args.model)
            recorder = WatchRecorder(project, row.id, folder)
            model_file = recorder.model_file()
            if args.threshold is None:    # the thresholds as the operator set them in the project
                args.threshold = row.image_threshold
        args.model = str(model_file)
        model = _load_for_inspection(args)
        if recorder is not None:
            model.pixel_threshold = manual(recorder.model.pixel_threshold)
        if args.output:
            out = ResultsFolder(args.output, model_file.name, model.pixel_threshold.value, WATCH_COLUMNS, append=True)
        done = out.done_paths() if out is not None else recorder.done_paths()
        sorter = Sorter(args.sort_into, folder, move=args.move) if args.sort_into else None
        exclude = [x for x in (out and out.folder, sorter and sorter.root, project and project.folder) if x]
        watcher = FolderWatcher(folder, settle=args.settle, poll=args.poll, done=done, exclude=exclude)

        def stop(signum, frame):
            if watcher.stopped:
                raise KeyboardInterrupt
            print("inspector: stopping after the parts in hand (again to stop at once)", file=sys.stderr)
            watcher.stop()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            mode = watcher.start()
            print(f"watching {folder} ({mode}); {watcher.waiting()} image(s) waiting from before; results in "
                  + " and ".join(str(x) for x in (out and out.csv_path, project and project.folder) if x)
                  + "; Ctrl+C stops", file=sys.stderr, flush=True)
            n_ok = n_flagged = n_skipped = 0
            for r in watch_inspect(model, watcher, Job(), args.batch_size):
                overlay = out.write_overlay(r) if out is not None else ""
                if recorder is not None:
                    p = r.prediction
                    recorder.store(r.path, p and p.score, p and p.verdict, p and p.anomaly_map, r.reason)
                t = now_text()
                row = out.add(r, overlay=overlay, time=t) if out is not None else \
                    result_row(r, model_file.name, overlay, time=t)
                if sorter is not None:
                    sorter.place(r)
                print(json_line({k: row[k] for k in ("time", "path", "status", "score", "verdict", "threshold",
                                                      "model", "overlay")}), flush=True)
                if r.ok:
                    n_ok += 1
                    n_flagged += r.prediction.is_anomalous
                else:
                    n_skipped += 1
                    if not args.quiet:
                        print(f"skipped {r.path}: {r.reason}", file=sys.stderr, flush=True)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        print(f"stopped: {n_ok} image(s) inspected, {n_flagged} flagged anomalous, {n_skipped} skipped",
              file=sys.stderr)
        return 0
    finally:
        if watcher is not None:
            watcher.close()
        if out is not None:
            out.finish()
        if project is not None:
            project.close()


def _fmt(v, pct=True):
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.1f}"


def cmd_evaluate(args) -> int:
    from .research.evaluation import evaluate
    settings = _settings(args)
    cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
    job, bar = _job(args)
    shown = []
    header = (f"{'category':<16}{'img AUROC':>10}{'pix AUROC':>10}{'PRO':>7}{'F1':>7}"
              f"{'train s':>9}{'ms/img':>8}{'RSS MB':>8}{'model MB':>9}{'train':>7}{'test':>6}")

    def show(row):
        bar.close()
        if not shown:           # printed with the first result, so that a mistake comes alone
            print(f"{settings.method} / {settings.backbone}, resize {settings.resize}, crop {settings.crop or 'none'}"
                  + (f", {settings.align} alignment" if settings.align != "none" else "")
                  + (f", {args.labelled_anomalies} labelled anomalies left out" if args.labelled_anomalies else ""))
            print(header)
            shown.append(True)
        print(f"{row.name:<16}{_fmt(row.image_auroc):>10}{_fmt(row.pixel_auroc):>10}{_fmt(row.pro):>7}"
              f"{_fmt(row.f1):>7}{row.train_seconds:>9.1f}{row.ms_per_image:>8.1f}{row.peak_rss_mb:>8.0f}"
              f"{row.model_size_mb:>9.1f}{row.n_train:>7}{row.n_test:>6}", flush=True)
        if row.n_not_aligned:
            print(f"  ({row.n_not_aligned} test image(s) could not be aligned and were scored as taken)", flush=True)

    import tempfile
    with tempfile.TemporaryDirectory(prefix="inspector-eval-") as tmp:
        try:
            report = evaluate(args.dataset, settings, cats, job, args.labelled_anomalies,
                              model_dir=Path(args.save_models or tmp), on_result=show)
        finally:
            bar.close()
    rows = report.pop("_rows")
    if len(rows) > 1:
        def mean(key):
            vals = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            return sum(vals) / len(vals) if vals else None
        print(f"{'mean':<16}{_fmt(mean('image_auroc')):>10}{_fmt(mean('pixel_auroc')):>10}"
              f"{_fmt(mean('pro')):>7}{_fmt(mean('f1')):>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


BENCHMARK_KEYS = ("backbone", "image_size", "coreset_ratio", "n_bank_images", "backbone_ms_per_image",
                  "inference_ms_per_image", "feature_extraction_seconds", "coreset_seconds", "peak_rss_mb",
                  "data", "index_seconds", "training_seconds", "stages")


def cmd_benchmark(args) -> int:
    if args.throughput:
        from .research.throughput import run as run_throughput
        return run_throughput(args)
    from .research.benchmark import run_benchmark
    options = method_options(args)
    job, bar = _job(args)
    try:
        r = run_benchmark(args.backbone, args.method, args.images, args.size,
                          random_weights=args.random_weights or not args.weights, weights=args.weights,
                          options=options, job=job, data=args.data)
    finally:
        bar.close()
    bank = ", ".join(f"{k} {r[k]}" for k in ("coreset_ratio", "index") if r[k] is not None)
    print(f"{r['method']} / {r['backbone']} at {r['image_size']} px on {r['device']}, bank from "
          f"{r['n_bank_images']} {'images of ' + r['data'] if r['data'] else 'generated images'}"
          + (f", {bank}" if bank else ""))
    print(f"  backbone forward     {r['backbone_ms_per_image']:8.1f} ms/image")
    print(f"  full inference       {r['inference_ms_per_image']:8.1f} ms/image "
          f"({r['inference_ms_per_image'] / r['backbone_ms_per_image']:.2f} x backbone)")
    if r["feature_extraction_seconds"] is not None:
        print(f"  feature extraction   {r['feature_extraction_seconds']:8.1f} s")
    if r["coreset_seconds"] is not None:
        print(f"  coreset selection    {r['coreset_seconds']:8.1f} s")
    if r["index_seconds"] is not None:
        print(f"  index building       {r['index_seconds']:8.1f} s")
    for stage, seconds in r["stages"].items():      # other methods' stages (N-pad's k-means, APC's tuning)
        if stage not in ("feature_extraction_seconds", "coreset_seconds", "index_seconds"):
            print(f"  {stage.replace('_seconds', '').replace('_', ' '):<20} {seconds:8.1f} s")
    print(f"  training, end to end {r['training_seconds']:8.1f} s (image decoding included)")
    print(f"  peak RSS             {r['peak_rss_mb']:8.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({k: r[k] for k in BENCHMARK_KEYS}, indent=2))
    return 0


def cmd_advise(args) -> int:
    from .core.methods.advisor import advise
    from .core.datasets import is_mvtec_category, load_mvtec_category, training_images
    paths = training_images(args.data_dir)
    n_anomalies = 0
    if is_mvtec_category(args.data_dir):
        n_anomalies = sum(1 for s in load_mvtec_category(args.data_dir).test if s.is_anomalous)
    job, bar = _job(args)
    try:
        advice = advise(paths, n_anomalies, resize=args.resize, max_images=args.max_images, job=job)
    finally:
        bar.close()
    print(advice.sentence)
    print(f"measured on {advice.n_images} good images:")
    print(advice.table())
    print(f"train with: {advice.train_flags()}")
    if args.json:
        Path(args.json).write_text(json.dumps(advice.to_json(), indent=2))
    return 0


def cmd_report(args) -> int:
    from .project.store import Project, ProjectError
    from .reports.pdf_report import export_pdf, remember_line_lot
    project = Project.open(args.project)
    try:
        model_id = None
        if args.model:
            named = [m for m in project.models() if m.name == args.model]
            if not named:
                names = ", ".join(m.name for m in project.models()) or "none"
                raise ProjectError(f"no model named '{args.model}' in the project (models: {names})")
            model_id = named[-1].id
        remember_line_lot(project, args.line, args.lot)     # the project's next default (not when read-only)
        job, progress = _job(args)
        try:
            pages = export_pdf(project, args.output, model_id, job=job, line=args.line, lot=args.lot)
        finally:
            progress.close()
    finally:
        project.close()
    print(f"wrote {args.output} ({pages} page{'s' if pages != 1 else ''})")
    return 0


def cmd_methods(args) -> int:
    from .core.methods import catalog
    if args.name:
        print(catalog.describe(catalog.get(args.name)))
        return 0
    for m in catalog.methods():
        needs = " (needs labelled anomalous images)" if m.needs_anomalies else ""
        print(f"{m.name:<12}{m.label}: {m.description}{needs}")
    print("\n'inspector methods NAME' lists a method's options (--option KEY=VALUE).")
    return 0


def cmd_gui(args) -> int:
    from .gui.app import main as gui_main
    return gui_main(args.path)


def cmd_screenshots(args) -> int:
    from .gui.screenshots import main as shots_main
    return shots_main([args.out_dir] + (["--mask"] if args.mask else []) + (["--generated"] if args.generated else [])
                      + ([f"--sizes={args.sizes}"] if args.sizes else []))


def build_parser() -> argparse.ArgumentParser:
    from .core.backbone_specs import DEFAULT_BACKBONE
    from .core.choices import THRESHOLD_STRATEGIES
    p = argparse.ArgumentParser(prog="inspector", description="Visual quality inspection with anomaly detection.")
    p.add_argument("--version", action="version", version=f"inspector {__version__}")
    sub = p.add_subparsers(dest="command")

    g = sub.add_parser("gui", help="open the desktop application")
    g.add_argument("path", nargs="?", help="a project folder or an image folder")
    g.set_defaults(func=cmd_gui)

    t = sub.add_parser("train", help="train a model on normal images")
    t.add_argument("data_dir", help="a folder of normal images, or an MVTec-layout category (uses train/good)")
    t.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (.inspector)")
    t.add_argument("--threshold", default="mean+3std", choices=list(THRESHOLD_STRATEGIES),
                   help="how the image threshold is set from held-out normal images (default mean+3std)")
    _add_model_args(t, None)
    t.add_argument("--anomalies", action="append", default=[], metavar="DIR_OR_LIST",
                   help="labelled anomalous images for APC: a folder, an image, or a text file of "
                        "'IMAGE[<TAB>MASK]' lines (repeatable)")
    t.add_argument("--masks", metavar="DIR",
                   help="defect masks for --anomalies, matched by name (<stem>_mask.png or <stem>.png)")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="score images with a model")
    pr.add_argument("model", help="a model file written by 'inspector train'")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    pr.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for results.csv and overlays")
    pr.add_argument("--weights", metavar="FILE", help="the backbone weights file the model was trained with")
    pr.add_argument("--threshold", type=float, metavar="VALUE",
                    help="image-score threshold to use instead of the model's own")
    pr.add_argument("--batch-size", type=int, default=None, metavar="N",
                    help="images scored together (default 8; a watched folder's parts are scored as they come)")
    pr.add_argument("-q", "--quiet", action="store_true")
    pr.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                    help="score on Ray (needs the 'cluster' extra): a local Ray instance, or with ADDRESS "
                         "('auto' or HOST:PORT) a running cluster; also writes results.parquet")
    pr.add_argument("--ray-actors", type=int, metavar="N",
                    help="model copies scoring in parallel on Ray, one CPU (or GPU) each "
                         "(default 1 locally, one per machine on a cluster)")
    pr.set_defaults(func=cmd_predict)

    u = sub.add_parser("update", help="teach a model more normal images without retraining (a new version)")
    u.add_argument("model", help="the model file to start from (it is not changed)")
    u.add_argument("--add-normal", nargs="+", required=True, metavar="PATH",
                   help="good images or folders of them (unreadable files are skipped and listed)")
    u.add_argument("-o", "--output", required=True, metavar="NEW_MODEL", help="the new version's file (.inspector)")
    u.add_argument("--weights", metavar="FILE", help="the backbone weights file the model was trained with")
    u.add_argument("-q", "--quiet", action="store_true")
    u.set_defaults(func=cmd_update)
    wa = sub.add_parser("watch", help="inspect every image that lands in a folder (a camera's), as it comes")
    wa.add_argument("model", help="a model file; with --project, one of the project's models (name or file)")
    wa.add_argument("folder", metavar="DIR", help="the folder to watch (sub-folders too)")
    wa.add_argument("-o", "--output", metavar="OUT_DIR",
                    help="folder for results.csv (one line per part, appended) and overlays")
    wa.add_argument("--project", metavar="PROJECT", help="store the results in this project too")
    wa.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                    help="a file unchanged this long is complete (default 1; under Linux's events a file "
                         "is complete when its writer closes it)")
    wa.add_argument("--poll", action="store_true",
                    help="poll instead of file-system events (network shares; automatic where events fail)")
    wa.add_argument("--sort-into", metavar="FOLDER", help="copy passed parts into FOLDER/pass, failed into FOLDER/fail")
    wa.add_argument("--move", action="store_true", help="with --sort-into: move the images instead of copying")
    wa.add_argument("--weights", metavar="FILE", help="the backbone weights file the model was trained with")
    wa.add_argument("--threshold", type=float, metavar="VALUE", help="image-score threshold instead of the model's")
    wa.add_argument("--batch-size", type=int, default=None, metavar="N", help="most images scored together (default 4)")
    wa.add_argument("-q", "--quiet", action="store_true", help="no line on stderr per skipped file")
    wa.set_defaults(func=cmd_watch)

    e = sub.add_parser("evaluate", help="train and test on MVTec-layout data; prints AUROC, PRO, timings")
    e.add_argument("dataset", help="an MVTec-layout root (folder of categories) or one category")
    e.add_argument("--categories", help="comma-separated category names")
    e.add_argument("--labelled-anomalies", type=int, default=0, metavar="N",
                   help="move N anomalous test images per category into training (APC) and out of the evaluation")
    e.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    e.add_argument("--save-models", metavar="DIR", help="keep the trained models in DIR")
    _add_model_args(e, 224)
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("benchmark", help="speed: backbone vs full inference, bank building, memory")
    _add_method_args(b)
    b.add_argument("--backbone", default=DEFAULT_BACKBONE)
    b.add_argument("--weights", metavar="FILE")
    b.add_argument("--random-weights", action="store_true", help="(the default: speed does not depend on weights)")
    b.add_argument("--data", metavar="DIR",
                   help="measure on real images: an MVTec-layout category (train/good for the bank, test "
                        "images for inference) or a folder of good images (default: generated images)")
    b.add_argument("--images", type=int, default=209, help="bank images, generated mode (default 209)")
    b.add_argument("--size", type=int, default=224, help="image size (default 224)")
    b.add_argument("--json", metavar="OUT.json")
    b.add_argument("-q", "--quiet", action="store_true")
    tp = b.add_argument_group("end-to-end throughput of predict and latency of watch (research/throughput.py)")
    tp.add_argument("--throughput", metavar="DIR", help="time 'predict' and 'watch' on the images of DIR")
    tp.add_argument("--model", metavar="MODEL", help="the model file to time them with")
    tp.add_argument("--against", metavar="TREE", help="also time the predict of another checkout (PYTHONPATH=TREE)")
    tp.add_argument("--against-model", metavar="MODEL", help="the model file --against's predict reads (default "
                    "--model; an older checkout may not read today's model format: give it a model it trained)")
    tp.add_argument("--rounds", type=int, default=2, help="alternating rounds of this/--against (default 2)")
    tp.add_argument("--repeats", type=int, default=3, help="the folder given this many times to predict (default 3)")
    tp.add_argument("--batch-sizes", metavar="N,N,...", help="also time predict at these batch sizes")
    tp.add_argument("--rate", type=float, default=1.0, help="images per second landing in the watched folder")
    tp.add_argument("--latency-images", type=int, default=30, help="images to land (0: no watch latency)")
    tp.add_argument("--settle", type=float, default=1.0, help="watch's --settle (default 1)")
    b.set_defaults(func=cmd_benchmark)

    m = sub.add_parser("methods", help="list the methods; with a name, its options, defaults and ranges")
    m.add_argument("name", nargs="?", help="a method (see the list without a name)")
    m.set_defaults(func=cmd_methods)
    ad = sub.add_parser("advise", help="measure how much the good images move; recommend a method and alignment")
    ad.add_argument("data_dir", help="a folder of good images, or an MVTec-layout category (uses train/good)")
    ad.add_argument("--resize", type=int, default=256, help="images are resized to this square (default 256)")
    ad.add_argument("--max-images", type=int, default=60, help="good images measured, evenly spaced (default 60)")
    ad.add_argument("--json", metavar="OUT.json", help="write the measurements as JSON")
    ad.add_argument("-q", "--quiet", action="store_true")
    ad.set_defaults(func=cmd_advise)

    r = sub.add_parser("report", help="write a PDF inspection report of a project's results")
    r.add_argument("project", help="a project folder (made by the desktop application)")
    r.add_argument("-o", "--output", required=True, metavar="REPORT.pdf", help="the PDF to write")
    r.add_argument("--model", metavar="NAME", help="the model whose results to report (default: the current one)")
    r.add_argument("--line", metavar="TEXT", help="the production line, for the title block (default: the "
                                                  "project's last one; '' for none)")
    r.add_argument("--lot", metavar="TEXT", help="the lot or batch, for the title block (default: the project's "
                                                 "last one; '' for none)")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_report)

    sh = sub.add_parser("screenshots", help="render the application's screenshots offscreen: builds a project, "
                        "trains through the wizard, inspects and reviews (the packaged app's self-check)")
    sh.add_argument("out_dir", help="folder for the PNGs")
    sh.add_argument("--generated", action="store_true",
                    help="generated images and random weights, even where ../shared is present")
    sh.add_argument("--mask", action="store_true", help="only the mask-painting screenshot (no training)")
    sh.add_argument("--sizes", metavar="WxH,...", help="window sizes, e.g. 1280x800,1920x1080: one set of PNGs "
                    "per size, in WxH/ folders (default: 1280x800, in OUT_DIR itself)")
    sh.set_defaults(func=cmd_screenshots)

    a = sub.add_parser("ablation", add_help=False,
                       help="N-pad ablation (paper table 3): maps A, B, A+B, with and without shifting")
    a.add_argument("rest", nargs=argparse.REMAINDER, help="see 'inspector ablation --help'")
    return p


def _stop_on_sigterm():
    """SIGTERM (``kill``, a service manager, a closing terminal session) stops a command as Ctrl+C
    does: the job unwinds, temporaries are removed, nothing half-written remains.  Returns a
    function that puts the previous handler back."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return lambda: None
    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ablation"]:          # its own parser: argparse cannot pass "--help" on
        from .research.ablation import main as ablation_main
        return ablation_main(argv[1:])
    if argv[:1] == ["smoke"]:             # hidden: the packaged application's self-check (smoke.py)
        from .smoke import main as smoke_main
        return smoke_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.path = None
        args.func = cmd_gui
    from .core.errors import InspectorError
    from .core.jobs import Cancelled
    # the application has its own close handling
    restore = _stop_on_sigterm() if args.func is not cmd_gui else (lambda: None)
    try:
        return args.func(args)
    except InspectorError as exc:
        print(f"inspector: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (Cancelled, KeyboardInterrupt):
        print("inspector: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
