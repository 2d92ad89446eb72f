"""How long a latent may go without firing before the TopK aux loss treats it as dead, given the budget.

sae-lens counts a latent as dead after ``dead_feature_window`` steps without firing (default 1000) and
only then lets the aux loss pull it back. A budget shorter than the window never runs the aux loss, so
every trained family follows one rule, said here and in the README: the window is at most a quarter of
the training steps.
"""

from __future__ import annotations

# sae-lens's default dead_feature_window, in steps.
SAE_LENS_DEAD_FEATURE_WINDOW = 1000


def dead_feature_window_for(steps: int, requested: int | None = None) -> int:
    """The dead-latent window of a budget of ``steps``: the rule is that the TopK aux loss must be able to
    act for at least the last three quarters of training, so a window is at most steps // 4.

    ``requested`` (a family file's ``training.dead_feature_window``) is used as given and refused with a
    ValueError when longer; unset, it is sae-lens's 1000 steps, shortened to steps // 4 for budgets under
    4000 steps (with a shorter window the aux loss could never run: a latent is dead only after it)."""
    limit = max(1, steps // 4)
    if requested is None:
        return min(SAE_LENS_DEAD_FEATURE_WINDOW, limit)
    if requested > limit:
        raise ValueError(f"dead_feature_window {requested} is longer than a quarter of the {steps} training "
                         f"steps: the aux loss would act on dead latents for less than three quarters of training; "
                         f"train at least {4 * requested} steps or set a window of at most {limit}")
    return requested
