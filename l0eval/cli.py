"""The ``l0eval`` command line: ``l0eval run --family toy`` and friends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l0eval.errors import L0EvalError, library_error_line


def _run(args: argparse.Namespace) -> int:
    from l0eval import cpu_memory, torch_threads
    from l0eval.family.catalog import resolve

    _check_run_options(args)
    if len(set(args.family)) != len(args.family):
        raise L0EvalError("a --family is given twice")
    overrides = _training_overrides(args)
    profile_overrides = _activation_overrides(args)
    families = [resolve(name, args.device, profile_overrides).with_overrides(overrides) for name in args.family]
    if args.targets:
        families = _with_published_targets(families, args)
    for family in families:
        _check_fits(family, args)
    _check_before_starting(families, args)
    threads = torch_threads.pin(torch_threads.chosen())  # the same in Ray workers: same floats
    cpu_memory.keep_freed_memory()
    if args.executor == "ray":
        return _run_on_ray(families, args, threads)
    if args.ray_address:
        raise L0EvalError("--ray-address needs --executor ray")
    from l0eval.executors.local import run_family

    downstream = _downstream_config(args)
    for family in families:
        _write_results(run_family(family, device=args.device, progress=not args.quiet, downstream=downstream),
                       args.out)
    return 0


def _with_published_targets(families: list, args: argparse.Namespace) -> list:
    """--targets saebench: each family judged against SAEBench's published results, without a model pass."""
    if args.executor != "local":
        raise L0EvalError("--targets saebench runs with the local executor (it makes no model pass to distribute)")
    return [_published_targets(family, args) for family in families]


def _published_targets(family, args: argparse.Namespace):
    """The family with SAEBench's published results (--saebench-results, --saebench-evals) as its targets."""
    from l0eval.downstream.saebench_targets import ResultsDataset
    from l0eval.runs.saebench_published import with_saebench_targets

    return with_saebench_targets(family, ResultsDataset.parse(args.saebench_results, args.saebench_evals))


def _check_run_options(args: argparse.Namespace) -> None:
    """Everything `run` can check before it resolves a family, trains or loads anything."""
    from l0eval import preflight

    preflight.device(args.device)
    preflight.writable_folder(args.out, "--out")
    preflight.cache_folder()
    preflight.whole(args.seed, "--seed", low=0, high=MAX_SEED)
    preflight.whole(args.seeds, "--seeds", high=MAX_SEEDS)
    preflight.whole(args.samples, "--samples")
    preflight.whole(args.max_attempts, "--max-attempts")
    preflight.positive(args.unit_memory_gb, "--unit-memory-gb")
    for k in args.probe_k or ():
        preflight.whole(k, "--probe-k")


MAX_SEED = 2**32 - 1  # numpy's seed range; torch's is wider
MAX_SEEDS = 1000  # seed replicates per L0: more is a typo, and a memory estimate would refuse it anyway


def _check_fits(family, args: argparse.Namespace) -> None:
    """The family's name can be a file name, its members fit this machine's memory and its inputs can be had."""
    from l0eval.family.member_config import check_cached_configs
    from l0eval.memory_check import require
    from l0eval.safe_names import path_component

    if (Path(args.out) / f"{path_component(family.name)}.json").is_dir():
        raise L0EvalError(f"{Path(args.out) / family.name}.json is a folder: the results file cannot be written there")
    check_cached_configs(family)
    require(family.members.memory_needed(), f"family '{family.name}'", args.device)
    if family.activations is not None:
        family.activations.check_reachable()


def _check_before_starting(families: list, args: argparse.Namespace) -> None:
    """Every family can start, and none would replace a committed results file: checked for all before any runs."""
    from l0eval.family.readiness import needs_text, run_needs
    from l0eval.results import is_committed

    problems = [line for family in families
                for line in needs_text(family.name, [need for need in run_needs(family) if need.blocking])]
    if not args.force:
        problems += [f"{path} is a committed results file of another run; pass --force to replace it, or --out DIR"
                     for path in (Path(args.out) / f"{family.name}.json" for family in families) if is_committed(path)]
    if problems:
        raise L0EvalError("; ".join(problems))


def _write_results(results: dict, out: str) -> None:
    from l0eval.publish.console import summary
    from l0eval.results import write_json
    from l0eval.safe_names import path_component

    path = write_json(Path(out) / f"{path_component(results['family']['name'])}.json", results)
    print(summary(results))
    print(f"\nresults written to {path} ({results['run']['wall_seconds']:.0f}s)")


def _run_on_ray(families: list, args: argparse.Namespace, threads: int) -> int:
    from l0eval.executors.ray import RayOptions, run_on_ray

    options = RayOptions(address=args.ray_address, device=args.device, downstream=_downstream_config(args),
                         unit_memory_gb=args.unit_memory_gb,
                         max_attempts=args.max_attempts, progress=not args.quiet, threads=threads)
    outcome = run_on_ray(families, options, lambda results: _write_results(results, args.out))
    for line in outcome.failed:
        print(f"l0eval: error: {line}", file=sys.stderr)
    return 1 if outcome.failed else 0


def _downstream_config(args: argparse.Namespace):
    """--metrics, --seed and the probing/absorption options for a `kind: saes` family."""
    from l0eval.downstream.suite import ALL_METRICS, DEFAULT_SEED, DownstreamConfig, parse_metrics

    if args.seed is not None and args.seed < 0:
        raise L0EvalError("--seed must be >= 0")
    if args.probe_k is not None and any(k < 1 for k in args.probe_k):
        raise L0EvalError("--probe-k values must be >= 1")
    if args.absorption_words is not None and args.absorption_words < 26 * 5:
        raise L0EvalError(f"--absorption-words must be at least {26 * 5} (5 words per letter)")
    return DownstreamConfig(metrics=parse_metrics(args.metrics) if args.metrics else ALL_METRICS,
                            probe_datasets=tuple(args.probe_datasets) if args.probe_datasets else None,
                            probe_exclude=tuple(args.probe_exclude or ()),
                            probe_ks=tuple(args.probe_k) if args.probe_k else DownstreamConfig.probe_ks,
                            absorption_words=args.absorption_words,
                            seed=args.seed if args.seed is not None else DEFAULT_SEED, explicit=bool(args.metrics))


def _training_overrides(args: argparse.Namespace):
    """--paper-recipe, --samples, --seed and --seeds, for the families l0eval trains."""
    from l0eval.family.model import TrainingOverrides

    if args.seeds is not None and args.seeds < 1:
        raise L0EvalError("--seeds must be at least 1")
    if args.seed is not None and args.seed < 0:
        raise L0EvalError("--seed must be >= 0")
    return TrainingOverrides(samples=args.samples, seed=args.seed, seeds=args.seeds, paper_recipe=args.paper_recipe)


def _families(args: argparse.Namespace) -> int:
    from l0eval.family.catalog import describe_family, family_table, resolve

    if args.action == "show":
        if not args.name:
            raise L0EvalError("usage: l0eval families show NAME")
        print(describe_family(resolve(args.name)))
    else:
        print(family_table(include_generated=args.all))
    return 0


def _activation_overrides(args: argparse.Namespace) -> dict:
    from l0eval.family.profiles import parse_overrides

    return parse_overrides(args.activations)


def _download(args: argparse.Namespace) -> int:
    from huggingface_hub import constants

    from l0eval.activations.llm.hub_inputs import cache_bytes
    from l0eval.family.catalog import resolve
    from l0eval.family.registry import size_text

    family = resolve(args.family, activation_overrides=_activation_overrides(args))
    before = cache_bytes()
    for line in family.members.download(family):
        print(line)
    if args.targets:  # the published results stand in for the model pass: no model or corpus to fetch
        source = _published_targets(family, args).activations
        files = sum(len(results.sources) for results in source.all_results().values())
        print(f"{files} SAEBench result files of {source.dataset.repo_id} cached and checked")
    elif family.activations is not None:
        for line in family.activations.download():
            print(line)
    print(f"fetched {size_text(cache_bytes() - before)} into {constants.HF_HUB_CACHE}; "
          f"`l0eval run --family {args.family}` can now run offline (HF_HUB_OFFLINE=1)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from l0eval import cpu_memory, torch_threads
    from l0eval.family.catalog import resolve
    from l0eval.train.llm import LLMTrainingConfig, train_missing_l0s

    _check_train_options(args)
    family = resolve(args.family, args.device, _activation_overrides(args))
    source = family.require_activations()
    config = LLMTrainingConfig(k_values=tuple(float(k) for k in args.l0), width=args.width or 0,
                               samples=args.samples, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                               device=args.device, progress=not args.quiet)
    torch_threads.pin(torch_threads.chosen())
    cpu_memory.keep_freed_memory()
    added = train_missing_l0s(family, source, config)
    for member in added:
        print(f"trained L0 {member['nominal_l0']:g} ({member['samples']:,} tokens) -> {member['path']}")
    print(f"{len(added)} SAEs added to family '{family.name}' as trained-here members")
    return 0


def _check_train_options(args: argparse.Namespace) -> None:
    from l0eval import preflight

    preflight.device(args.device)
    preflight.cache_folder()
    for k in preflight.distinct(args.l0, "--l0"):
        preflight.positive(k, "--l0")
    preflight.whole(args.width, "--width")
    preflight.whole(args.batch_size, "--batch-size")
    preflight.whole(args.samples, "--samples", low=args.batch_size)
    preflight.positive(args.lr, "--lr")
    preflight.whole(args.seed, "--seed", low=0, high=MAX_SEED)


def _compare(args: argparse.Namespace) -> int:
    from l0eval.publish.leaderboard import collect, compare_text

    verdicts, skipped = collect(args.results, _bootstrap_design(args))
    print(compare_text(verdicts))
    for line in skipped:
        print(f"not judged: {line}")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from l0eval import preflight
    from l0eval.publish.leaderboard import write_leaderboard
    from l0eval.publish.screenshots import find_chromium, write_screenshots

    preflight.writable_folder(args.out, "--out")
    written = write_leaderboard(args.results, args.out, _bootstrap_design(args))
    chromium = None if args.no_screenshots else find_chromium()
    if chromium:
        written += write_screenshots(args.out, chromium)
    print(f"leaderboard written to {args.out}/ ({len(written)} files)"
          + ("" if chromium or args.no_screenshots else "; screenshots not regenerated: no Chromium found "
                                                         "(install chromium or set L0EVAL_CHROMIUM)"))
    return 0


def _export(args: argparse.Namespace) -> int:
    from l0eval.publish.saebench_export import export_saebench
    from l0eval.results import read_results

    if (args.family is None) == (args.results_file is None):
        raise L0EvalError("give one of --family NAME or --results-file PATH")
    path = Path(args.results_file) if args.results_file else Path(args.results) / f"{args.family}.json"
    if not path.is_file():
        raise L0EvalError(f"no results file {path}" + ("" if args.results_file else
                                                        f"; run `l0eval run --family {args.family}` first"))
    written = export_saebench(read_results(path), args.out, _bootstrap_design(args))
    folders = sorted({p.parent.name for p in written})
    print(f"{len(written)} SAEBench files written to {args.out}/ ({', '.join(folders)})")
    return 0


def _bootstrap_design(args: argparse.Namespace):
    from l0eval import preflight
    from l0eval.selection.bootstrap import BootstrapDesign

    if args.resamples < 1:
        raise L0EvalError("--resamples must be at least 1")
    preflight.whole(args.bootstrap_seed, "--bootstrap-seed", low=0, high=MAX_SEED)
    return BootstrapDesign(resamples=args.resamples, seed=args.bootstrap_seed)


def _add_verdict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", help="directory of family results (default: results)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples (default 200)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed (default 0)")


def _add_activations_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", nargs="+", metavar="KEY=VALUE",
                        help="registry families: override fields of the model profile (model_profiles.yaml), e.g. "
                             "sequences=512 model_dtype=bfloat16; VALUE is read as YAML")


def _add_targets_options(parser: argparse.ArgumentParser) -> None:
    from l0eval.downstream.saebench_targets import DEFAULT_DATASET, DEFAULT_EVALS

    parser.add_argument("--targets", choices=["saebench"],
                        help="saebench: judge a SAEBench registry family against SAEBench's published results "
                             "(core, sparse probing, absorption) without a model pass; s_n^dec is not computed")
    parser.add_argument("--saebench-results", metavar="REPO[@REVISION]",
                        help=f"the results dataset for --targets saebench (default {DEFAULT_DATASET})")
    parser.add_argument("--saebench-evals", metavar="EVALS",
                        help=f"comma-separated eval types to import (default {','.join(DEFAULT_EVALS)}; also "
                             "sparse_probing_sae_probes)")


def build_parser() -> argparse.ArgumentParser:
    import l0eval

    parser = argparse.ArgumentParser(prog="l0eval", description="Which L0 is right for this sparse autoencoder?")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=f"l0eval {l0eval.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train/evaluate a family, apply every L0 selector, write results JSON")
    run.add_argument("--family", required=True, action="append",
                     help="built-in family name (see `l0eval families`) or a YAML path; repeat for several")
    run.add_argument("--out", default="results", help="directory for <family>.json (default: results); a "
                                                      "results file committed to git is not replaced without --force")
    run.add_argument("--force", action="store_true", help="replace a committed results file in --out")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument("--seed", type=int, help="first training seed replicate (also the training-data seed)")
    run.add_argument("--seeds", type=int, help="number of seed replicates per L0")
    run.add_argument("--samples", type=int, help="training samples per SAE (overrides the family spec)")
    run.add_argument("--paper-recipe", action="store_true",
                     help="the paper's full recipe: 15M samples per SAE at lr 3e-4, 5 seed replicates")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_activations_option(run)
    run.add_argument("--metrics", help="LLM families: comma-separated subset of core,snd,probing,absorption "
                                       "(default: all; --seed is the probing/absorption seed, default 42)")
    run.add_argument("--probe-datasets", nargs="+", help="sae-probes datasets to probe (default: all on GPU, a "
                                                         "documented subset on CPU)")
    run.add_argument("--probe-exclude", nargs="+", help="sae-probes datasets never to probe (those in the family's "
                                                        "SAE-training corpus are excluded automatically)")
    run.add_argument("--probe-k", type=int, nargs="+", help="top-k latents for sparse probing (default: 1 16)")
    run.add_argument("--absorption-words", type=int, help="absorption: sample this many words of the vocabulary "
                                                          "(default: all on GPU, 800 on CPU)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: one family after another in this process (default); ray: units of work over a "
                          "Ray cluster, resumable (pip install 'l0eval[ray]')")
    run.add_argument("--ray-address", help="the Ray cluster to join, e.g. HEAD_IP:6379 or auto "
                                           "(default: start Ray on this machine)")
    run.add_argument("--unit-memory-gb", type=float, default=16.0,
                     help="ray: memory of one GPU (CPU runs: memory one unit may use); LLM families are split "
                          "into shards of SAEs that fit it with the model (default 16)")
    run.add_argument("--max-attempts", type=int, default=3,
                     help="ray: attempts per unit before it is reported failed (default 3)")
    _add_targets_options(run)
    run.set_defaults(handler=_run)

    train = sub.add_parser("train", help="train BatchTopK SAEs at missing L0s on an LLM family's cached activations")
    train.add_argument("--family", required=True, help="a BatchTopK/TopK registry family, or a `kind: saes` family "
                                                       "file with an LLM `activations` section")
    train.add_argument("--l0", type=float, nargs="+", required=True, help="the L0s (BatchTopK k) to train")
    train.add_argument("--width", type=int, help="SAE width (default: the family's `width`)")
    train.add_argument("--samples", type=int, default=2_000_000, help="training tokens per SAE (default 2M)")
    train.add_argument("--batch-size", type=int, default=4096, help="tokens per training batch (default 4096)")
    train.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    train.add_argument("--seed", type=int, default=0, help="training seed: data order and initialisation (default 0)")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_activations_option(train)
    train.set_defaults(handler=_train)

    download = sub.add_parser("download", help="fetch everything a family's run reads from the hub (SAEs, model, "
                                               "tokenizer, corpus files, probing datasets) and check each SAE loads")
    download.add_argument("--family", required=True, help="a hub registry family or family YAML (see `l0eval "
                                                          "families`)")
    _add_activations_option(download)
    _add_targets_options(download)
    download.set_defaults(handler=_download)

    compare = sub.add_parser("compare", help="per family in results/, each selector's choice vs the ground truth")
    _add_verdict_options(compare)
    compare.set_defaults(handler=_compare)

    leaderboard = sub.add_parser("leaderboard", help="regenerate leaderboard/ (markdown, CSV, HTML, plots, "
                                                     "screenshots) from every family in results/")
    _add_verdict_options(leaderboard)
    leaderboard.add_argument("--out", default="leaderboard", help="output directory (default: leaderboard)")
    leaderboard.add_argument("--no-screenshots", action="store_true",
                             help="skip the 1280/1920 px page screenshots (taken when a Chromium is found)")
    leaderboard.set_defaults(handler=_leaderboard)

    export = sub.add_parser("export", help="write a family's results in another tool's format (SAEBench / "
                                           "Neuronpedia eval_results.json files)")
    export.add_argument("--format", choices=["saebench"], default="saebench",
                        help="saebench: one <eval_type>/<sae>_eval_results.json per SAE and eval type, plus the "
                             "L0 verdict as eval type l0eval_l0_selection (default: saebench)")
    export.add_argument("--family", help="family name: exports <results>/<family>.json")
    export.add_argument("--results-file", help="a results JSON file to export instead of --family")
    _add_verdict_options(export)
    export.add_argument("--out", default="eval_results", help="output directory (default: eval_results)")
    export.set_defaults(handler=_export)

    families = sub.add_parser("families", help="list known families (`families show NAME` lists members)")
    families.add_argument("action", nargs="?", choices=["list", "show"], default="list",
                          help="list: every family and what its run still needs (default); show: one family's members")
    families.add_argument("name", nargs="?", help="family name or YAML path, with `show`")
    families.add_argument("--all", action="store_true",
                          help="also list families generated from SAELens releases (every layer and width)")
    families.set_defaults(handler=_families)
    for command in sub.choices.values():  # `l0eval run ... --debug` as well as `l0eval --debug run ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from l0eval.hub_http import bound_hub_requests

        bound_hub_requests()
        return args.handler(args)
    except L0EvalError as exc:
        _error_line(str(exc))
        return 2
    except KeyboardInterrupt:
        print("l0eval: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as exc:  # the top-level guard: one line, the traceback only with --debug
        if getattr(args, "debug", False):
            raise
        line = library_error_line(exc)
        if line is not None:
            _error_line(line)
            return 2
        _error_line(f"{type(exc).__name__}: {str(exc).strip()}; re-run with --debug for the traceback")
        return 1


def _error_line(message: str) -> None:
    """One stderr line, whatever the message holds (a library's multi-line text, a NUL)."""
    flat = " ".join(message.replace("\0", "\\0").split())
    print(f"l0eval: error: {flat}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
