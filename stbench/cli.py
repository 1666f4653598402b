"""Command line: inspect methods and recipes, validate a dataset, write the demo dataset.

The workflow itself runs through Snakemake; this is for checking inputs before a run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stbench.errors import ConfigError, StbenchError
# Each subcommand imports its modules lazily, so that `stbench methods` does not load the loaders' pandas/anndata (~2 s).


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="stbench", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("methods", help="list the method folders and their needs")
    sub.add_parser("recipes", help="list the paper's dataset recipes")
    v = sub.add_parser("validate", help="check an h5ad (or counts + locations tables) against the dataset contract")
    v.add_argument("path", help="an .h5ad, or a counts table (then give --locations)")
    v.add_argument("--locations")
    s = sub.add_parser("simulate", help="write the deterministic demo dataset (and its reference)")
    s.add_argument("out", help="output .h5ad; the reference goes beside it as <name>.reference.h5ad")
    s.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("estimate", help="estimated device-hours of a config's GPU jobs, from measured rates")
    e.add_argument("--config", default="config.yaml")
    e.add_argument("--device", default=None, help="a device named in the rate CSVs (default: the first CUDA one)")
    e.add_argument("--rates", nargs="*", default=None, help="rate CSVs (default: benchmarks/results/stmcdi_*.csv)")
    e.add_argument("--gpus", nargs="*", type=int, default=[1, 2, 4, 8], help="wall time for --resources gpu=N, each N")
    f = sub.add_parser("failures", help="print a run's failed, suspect and skipped rows; exit 1 if fail_on says so")
    f.add_argument("run_dir", help="the run's folder, results/<run> (reads tables/failures.csv)")
    f.add_argument("--fail-on", default=None, choices=("none", "failed", "any"),
                   help="default: $STBENCH_FAIL_ON, else failed")
    n = sub.add_parser("new-method", help="write a working method folder (method.yaml, impute.py, README.md) to start from")
    n.add_argument("name", help="the folder and method name (lower case, digits, underscores)")
    n.add_argument("--methods-dir", default=None, help="default: the project's methods/")
    n.add_argument("--title", default=None)
    n.add_argument("--env", default="envs/core.yaml", help="its conda environment file, relative to the project root")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "methods":
            from stbench.run.registry import discover

            for m in discover().values():
                needs = [k for k in ("reference", "gpu") if (m.manifest.get("needs") or {}).get(k)]
                print(f"{m.name:12s} {m.title:30s} needs: {', '.join(needs) or '-'}")
        elif args.cmd == "recipes":
            from stbench.data import datasets

            for rid in datasets.list_recipes():
                r = datasets.get_recipe(rid)
                print(f"{rid:4s} {r.get('title', '')}")
        elif args.cmd == "validate":
            from stbench.data.contract import validate_dataset
            from stbench.data.loaders import get_loader

            if args.locations:
                adata = get_loader("tables")({"counts": args.path, "locations": args.locations})
            else:
                adata = get_loader("h5ad")({"path": args.path})
            validate_dataset(adata, args.path)
            print(f"{args.path}: ok ({adata.n_obs} spots x {adata.n_vars} genes)")
        elif args.cmd == "estimate":
            import yaml

            from stbench.results import cost_estimate

            with open(args.config) as fh:
                config = yaml.safe_load(fh)
            known = cost_estimate.devices(args.rates)
            device = args.device or next((d for d in known if d != "cpu"), known[0] if known else "cpu")
            if device not in known:
                raise ConfigError(f"no measured rates for device {device!r}; measured: {', '.join(known)}")
            from stbench.config import with_defaults

            k = int(with_defaults(config)["gpu_slots_per_device"])
            print(cost_estimate.report(cost_estimate.estimate(config, device, args.rates), device, args.gpus, k))
        elif args.cmd == "failures":
            from stbench.results.failures import default_fail_on, finish

            if not (Path(args.run_dir) / "tables" / "failures.csv").exists():
                raise ConfigError(f"{args.run_dir}/tables/failures.csv does not exist: run the workflow (its `failures` rule) first")
            return int(finish(args.run_dir, args.fail_on or os.environ.get("STBENCH_FAIL_ON") or default_fail_on(),
                              stream=sys.stdout))
        elif args.cmd == "new-method":
            from stbench.scaffold import new_method

            dest = new_method(args.name, args.methods_dir, title=args.title, env=args.env)
            print(f"wrote {dest}/ (method.yaml, impute.py, README.md). Next: add `{args.name}: {{}}` under `methods:`"
                  f" in a config (workflow/demo.yaml runs the demo) and run snakemake; the contract tests"
                  f" (tests/test_methods_contract.py) pick the folder up by themselves.")
        elif args.cmd == "simulate":
            from stbench.atomic import write_h5ad
            from stbench.data.simulate import simulate_demo

            a, ref = simulate_demo(seed=args.seed)
            out = Path(args.out)
            write_h5ad(out, a)
            write_h5ad(out.with_name(out.stem + ".reference.h5ad"), ref)
            print(f"wrote {out} ({a.n_obs} x {a.n_vars}) and its reference ({ref.n_obs} cells)")
    except StbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
