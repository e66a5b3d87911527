"""``inspector predict ... --ray [ADDRESS]``: the command line over :mod:`.ray_predict`."""

from __future__ import annotations

import sys

from ..core.errors import InspectorError


def predict_on_ray_command(args) -> int:
    """Score ``args.paths`` on Ray; print what the in-process ``predict`` prints, and the speed."""
    from ..cli import _job
    from ..core.images import describe_skipped
    from .ray_predict import predict_on_ray
    if args.ray is None:
        raise InspectorError("--ray-actors needs --ray (a local Ray instance, 'auto' or HOST:PORT)")
    if args.ray_actors is not None and args.ray_actors < 1:
        raise InspectorError(f"--ray-actors must be at least 1 (got {args.ray_actors})")
    job, bar = _job(args)
    try:
        run = predict_on_ray(args.model, args.paths, args.output, address=args.ray or None,
                             actors=args.ray_actors, weights=args.weights, threshold=args.threshold, job=job)
    finally:
        bar.close()
    if run.unset_threshold:
        print(f"warning: {args.model} has no image threshold (no normal images were held out "
              "from its training to set one): scores and maps are written, verdicts are not. "
              "Give one with --threshold VALUE.", file=sys.stderr)
    if run.skipped:
        print(describe_skipped(run.skipped), file=sys.stderr)
    verdicts = "no verdicts (no image threshold)" if run.unset_threshold else f"{run.anomalous} anomalous"
    rate = f", {run.inspected / run.seconds:.1f} images/s" if run.seconds > 0 else ""
    print(f"{run.inspected} image(s) inspected on Ray ({run.actors} actor(s){rate}), {verdicts}; "
          f"results in {run.csv_path} and {run.parquet_path.name}")
    return 0
