"""The L0 verdict as a SAEBench eval type, ``l0eval_l0_selection``: one output per family.

Defined with sae-bench's base classes (``BaseEvalConfig``, ``BaseMetrics``, ``BaseMetricCategories``,
``BaseResultDetail``, ``BaseEvalOutput``) in the style of ``sae_bench/evals/*/eval_output.py``, so a
SAEBench-format reader (``TypeAdapter(L0SelectionEvalOutput).validate_json``) accepts it and its JSON
schema comes from the same machinery. Per family, not per SAE: ``sae_lens_id`` is null and
``sae_cfg_dict`` describes what the members share.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    DEFAULT_DISPLAY,
    BaseEvalConfig,
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

EVAL_TYPE_ID_L0_SELECTION = "l0eval_l0_selection"


@dataclass
class L0SelectionEvalConfig(BaseEvalConfig):
    family: str = Field(default="", title="Family", description="The l0eval family: SAEs identical except for L0")
    family_kind: str = Field(default="", title="Family Kind",
                             description="toy (a known true L0) or saes (downstream targets of an LLM family)")
    selectors: list[str] = Field(default_factory=list, title="Selectors", description="The L0 selectors judged")
    bootstrap_resamples: int = Field(default=200, title="Bootstrap Resamples",
                                     description="Resamples of evaluation batches and seed replicates")
    bootstrap_seed: int = Field(default=0, title="Bootstrap Seed", description="Seed of the bootstrap draw")
    bootstrap_unit: str = Field(default="", title="Bootstrap Unit", description="What the bootstrap resamples")


@dataclass
class L0SelectionGridMetrics(BaseMetrics):
    n_l0s: int = Field(title="L0s", description="Number of L0s in the family's grid", json_schema_extra=DEFAULT_DISPLAY)
    min_l0: float = Field(title="Smallest L0", description="Smallest L0 of the grid")
    max_l0: float = Field(title="Largest L0", description="Largest L0 of the grid")
    n_targets: int = Field(title="Targets", description="Ground-truth targets (true L0, or downstream metric optima)",
                           json_schema_extra=DEFAULT_DISPLAY)


@dataclass
class L0SelectionTallyMetrics(BaseMetrics):
    judged: int = Field(title="Judged Choices", description="(target, selector) pairs with a target")
    within_one_step: int = Field(title="Within One Step",
                                 description="Choices within one grid step of their target",
                                 json_schema_extra=DEFAULT_DISPLAY)
    mean_abs_error_steps: float | None = Field(default=None, title="Mean |Error| (steps)",
                                               description="Mean absolute error in L0 grid steps over judged choices")


@dataclass
class L0SelectionMetricCategories(BaseMetricCategories):
    grid: L0SelectionGridMetrics = Field(title="Grid", description="The family's L0 grid and its targets",
                                         json_schema_extra=DEFAULT_DISPLAY)
    tally: L0SelectionTallyMetrics = Field(title="Tally", description="Every selector's choices against the targets",
                                           json_schema_extra=DEFAULT_DISPLAY)


@dataclass
class L0SelectionResultDetail(BaseResultDetail):
    selector: str = Field(title="Selector", description="The L0 selection rule")
    target: str | None = Field(default=None, title="Target",
                               description="true_l0 for toys, the downstream metric for LLM families, null if none")
    target_l0: float | None = Field(default=None, title="Target L0", description="The L0 the target points at")
    chosen_l0: float | None = Field(default=None, title="Chosen L0",
                                    description="The selector's choice (null: no decisive point)")
    interval_90_low: float | None = Field(default=None, title="90% Interval Low",
                                          description="5% quantile of the choice over bootstrap resamples")
    interval_90_high: float | None = Field(default=None, title="90% Interval High",
                                           description="95% quantile of the choice over bootstrap resamples")
    point_share: float | None = Field(default=None, title="Point Share",
                                      description="Share of resamples choosing chosen_l0")
    plausible_l0s: list[float] = Field(default_factory=list, title="Plausible L0s",
                                       description="Every L0 chosen in at least 5% of resamples")
    error_steps: int | None = Field(default=None, title="Error (steps)",
                                    description="Chosen minus target, in steps of the family's L0 grid")
    within_one: bool | None = Field(default=None, title="Within One Step", description="|error_steps| <= 1")
    regret: float | None = Field(default=None, title="Regret",
                                 description="The family's best target score minus the chosen SAE's (>= 0)")


@dataclass(config=ConfigDict(title="L0 Selection (l0eval)"))
class L0SelectionEvalOutput(
    BaseEvalOutput[L0SelectionEvalConfig, L0SelectionMetricCategories, L0SelectionResultDetail]
):
    """
    Which L0 of a family of SAEs identical except for L0 each selection rule picks, scored against the ground
    truth (a toy's true L0, or the L0 where an LLM family's downstream metric is best), with bootstrap intervals.
    The full verdict rows, including fields newer than this schema, are in eval_result_unstructured.
    """

    eval_config: L0SelectionEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: L0SelectionMetricCategories
    eval_result_details: list[L0SelectionResultDetail] = Field(
        default_factory=list, title="Choices", description="One per (target, selector)")
    eval_type_id: str = Field(default=EVAL_TYPE_ID_L0_SELECTION, title="Eval Type ID",
                              description="The type of the evaluation")
