"""Every metric l0eval reports, declared once: its label, formula and version, direction, axis scale and
whether it can be a ground-truth target. The verdict, the plots, the console table and the results'
``run.metric_versions`` read this module; a new metric is one ``Metric`` entry here (and its code in
``l0eval/metrics/`` or ``l0eval/downstream/``).

Torch-free on purpose: the leaderboard and ``l0eval families`` import it without loading a model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

# Formula and version of each metric group, by the key results files use under ``run.metric_versions``.
# Bump the "/N" when a code change alters a metric's values: cached per-SAE records are keyed by these.
FORMULAS = {
    "s_n_dec": "s_n_dec/1: mean over batches of the (n*B+1)-th largest of (X - b_dec) W_dec^T",
    # dead latents keep their random initial decoder rows, which say nothing about the learnt features
    "s_n_dec_alive": ("s_n_dec_alive/1: s_n_dec/1 over the decoder rows of latents that fired on the evaluation set "
                      "(h_alive rows; n < h_alive)"),
    "c_dec": "pairwise_cosine/1: mean |cos| over pairs i<j of unit-normalised vectors",
    "c_dec_alive": ("pairwise_cosine_alive/1: pairwise_cosine/1 over the decoder rows of latents that fired on the "
                    "evaluation set"),
    "c_enc": "pairwise_cosine/1: mean |cos| over pairs i<j of unit-normalised vectors",
    "reconstruction": "reconstruction/1: mse summed-over-dims; VE uncentred; FVU centred (sae-lens 6.54 EV)",
    "feature_recovery": "toy_recovery/1: mean over true features of max_j |cos(d_j, e_i)|",
    "spliced": ("spliced/1: ce_loss_score = (CE_zero - CE_sae)/(CE_zero - CE_clean), kl_div_score = "
                "(KL_zero - KL_sae)/KL_zero, KL(p_clean || p_patched) with log_softmax; all positions but the last"),
    "feature_mixing": "feature_mixing/1: mean over latents j != feature of cos(d_j, e_feature), ground-truth init",
    "sparse_probing": "sae-probes run_sae_evals (setting 'normal'): mean test F1 over datasets of top-k L1 probes",
    "saebench_probing": "SAEBench sparse_probing: top-k L2 probe test accuracy, mean over classes then datasets",
    "absorption": "SAEBench absorption_first_letter: mean over letters passing the ground-truth probe",
    # SAEBench's published results (l0eval.downstream.saebench_targets): their numbers, their formulas
    "saebench_core_published": (
        "SAEBench core as published: sparsity.l0; variance_explained = explained_variance_legacy (files before "
        "SAEBench 3b58c67, 2025-03-07: their explained_variance), 1 - per-token squared error over the squared "
        "deviation from the batch mean; mse per token over the batch's tokens; ce_loss_score, kl_div_score as "
        "SAEBench computes them; -1 read as null"),
    "saebench_published_probing": (
        "SAEBench sparse_probing as published: sae_top_1_test_accuracy (top-1 latent by mean difference, L2 logistic "
        "regression), mean over classes then datasets"),
    "saebench_published_sae_probes": (
        "SAEBench sparse_probing_sae_probes as published: sae_top_1_test_f1, mean over the sae-probes datasets"),
    "saebench_published_absorption": (
        "SAEBench absorption_first_letter as published: mean_absorption_fraction_score, mean_full_absorption_score "
        "over letters passing the ground-truth probe"),
    "synthetic_ground_truth": ("synthetic_ground_truth/1: sae_lens.synthetic.evals.eval_sae_on_synthetic_data on "
                               "the evaluation set (BatchTopK over all of it)"),
}

# The groups every streamed evaluation records under ``run.metric_versions`` (LLM families add "spliced").
STREAMED_FORMULAS = ("s_n_dec", "s_n_dec_alive", "c_dec", "c_dec_alive", "c_enc", "reconstruction", "feature_recovery")


@dataclass(frozen=True)
class Metric:
    """One metric column: a key of ``saes[].metrics`` and a column of ``by_l0``."""

    name: str
    label: str  # plot title
    formula: str  # key of FORMULAS
    higher_is_better: bool | None  # None: no direction (a diagnostic, not a quality)
    log_axis: bool = False  # plotted on a log y axis (when every value is positive)
    target: bool = False  # LLM families: the L0 where this metric is best is a ground-truth target
    header: str | None = None  # column header in the console table

    @property
    def version(self) -> str:
        return FORMULAS[self.formula]


_METRICS = (
    Metric("variance_explained", "variance explained", "reconstruction", True, header="VE"),
    Metric("fvu", "FVU", "reconstruction", False, log_axis=True, header="FVU"),
    Metric("mse", "MSE", "reconstruction", False, header="MSE"),
    Metric("measured_l0", "measured L0", "reconstruction", None, header="L0 measured"),
    Metric("dead_fraction", "dead latents (fraction)", "reconstruction", False, header="dead"),
    Metric("ce_loss_score", "CE loss recovered", "spliced", True, header="CE score"),
    Metric("kl_div_score", "KL score", "spliced", True, header="KL score"),
    Metric("c_dec", "c_dec", "c_dec", False, header="c_dec"),
    Metric("c_dec_alive", "c_dec (live latents)", "c_dec_alive", False),
    Metric("c_enc", "c_enc", "c_enc", False, header="c_enc"),
    Metric("s_n_dec", "s_n^dec", "s_n_dec", False),
    Metric("s_n_dec_alive", "s_n^dec (live latents)", "s_n_dec_alive", False),
    Metric("feature_recovery", "feature recovery (toy score)", "feature_recovery", True, header="recovery"),
    Metric("feature_mixing", "feature mixing", "feature_mixing", None),
    # synthetic worlds (sae-lens's SynthSAEBench evaluation); their targets are in ground_truth.targets
    Metric("mcc", "MCC (one-to-one feature match)", "synthetic_ground_truth", True, header="MCC"),
    Metric("f1", "F1 (latents as feature detectors)", "synthetic_ground_truth", True, header="F1"),
    Metric("precision", "precision", "synthetic_ground_truth", True),
    Metric("recall", "recall", "synthetic_ground_truth", True),
    Metric("uniqueness", "uniqueness", "synthetic_ground_truth", True),
    Metric("shrinkage", "shrinkage (output/input norm)", "synthetic_ground_truth", None),
    Metric("dead_latents", "dead latents", "synthetic_ground_truth", False),
    Metric("synthetic_explained_variance", "explained variance (sae-lens)", "synthetic_ground_truth", True),
    Metric("sparse_probing_k1", "sparse_probing_k1", "sparse_probing", True, target=True),
    Metric("sparse_probing_k16", "sparse_probing_k16", "sparse_probing", True, target=True),
    Metric("absorption_fraction", "absorption_fraction", "absorption", False, target=True),
    Metric("full_absorption", "full_absorption", "absorption", False, target=True),
    # SAEBench's published numbers (`l0eval run --targets saebench`), each a target of its own
    Metric("saebench_sparse_probing_k1", "SAEBench sparse probing top-1 accuracy (published)",
           "saebench_published_probing", True, target=True),
    Metric("saebench_sae_probes_k1", "SAEBench sae-probes top-1 F1 (published)", "saebench_published_sae_probes",
           True, target=True),
    Metric("saebench_absorption_fraction", "SAEBench absorption fraction (published)", "saebench_published_absorption",
           False, target=True),
    Metric("saebench_full_absorption", "SAEBench full absorption (published)", "saebench_published_absorption", False,
           target=True),
    Metric("saebench_explained_variance", "explained variance (SAEBench's own field, published)",
           "saebench_core_published", True),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in _METRICS}

# Display orders (names of METRICS); s_n^dec columns, whose n varies by family, are placed by the reader.
CONSOLE_COLUMNS = ("variance_explained", "fvu", "mse", "measured_l0", "dead_fraction", "ce_loss_score",
                   "kl_div_score", "c_dec", "c_enc")
PLOT_PANELS = ("fvu", "variance_explained", "c_dec", "c_enc", "feature_recovery", "f1", "mcc", "ce_loss_score",
               "sparse_probing_k1", "sparse_probing_k16", "absorption_fraction", "full_absorption")

# The absorption evaluation's scores, and its flat per-SAE columns (the rest goes to saes[].downstream)
ABSORPTION_SCORES = ("absorption_fraction", "full_absorption")
ABSORPTION_COLUMNS = (*ABSORPTION_SCORES, "absorption_num_split_features")


def target_metrics() -> tuple[Metric, ...]:
    """Metrics that can be a ground-truth target, in declaration order."""
    return tuple(metric for metric in _METRICS if metric.target)


def metric_versions(*extra_formulas: str) -> dict[str, str]:
    """``run.metric_versions``: the formula of every streamed metric group, plus ``extra_formulas``."""
    return {key: FORMULAS[key] for key in (*STREAMED_FORMULAS, *extra_formulas)}
