"""Read the residual stream of any Hugging Face causal LM at a TransformerLens-named hook point.

``blocks.L.hook_resid_post`` is the output of decoder layer L and ``blocks.L.hook_resid_pre`` its input,
the meanings SAELens and TransformerLens give these names (the paper hooks ``model.layers.12`` for
``blocks.12.hook_resid_post``). The forward pass stops right after the hooked layer, so the layers
above it never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from l0eval.errors import L0EvalError

# Where each architecture family keeps its decoder layers (transformers module names).
DECODER_LAYER_PATHS = ("model.layers", "gpt_neox.layers", "transformer.h", "model.decoder.layers",
                       "transformer.layers")

_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


class HookError(L0EvalError):
    """A hook point the model does not have, or a model whose layers l0eval cannot find."""


@dataclass(frozen=True)
class HookPoint:
    layer: int
    position: str  # "pre" (input of the layer) or "post" (its output)

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_{self.position}"


def parse_hook(name: str) -> HookPoint:
    match = _HOOK.match(name)
    if match is None:
        raise HookError(f"unsupported hook point '{name}': l0eval reads blocks.L.hook_resid_pre or "
                        "blocks.L.hook_resid_post")
    return HookPoint(int(match.group(1)), match.group(2))


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    for path in DECODER_LAYER_PATHS:
        module = model
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise HookError(f"cannot find the decoder layers of {type(model).__name__} (looked for "
                    f"{', '.join(DECODER_LAYER_PATHS)})")


class _StopForward(Exception):
    """Raised by the hook once the activations are captured, so no later layer runs."""


def _hidden_states(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def residual_activations(model: nn.Module, input_ids: torch.Tensor, hook: HookPoint | str,
                         attention_mask: torch.Tensor | None = None, stop_early: bool = True) -> torch.Tensor:
    """Residual-stream activations [batch, seq, d_model] at ``hook`` for ``input_ids``."""
    hook = parse_hook(hook) if isinstance(hook, str) else hook
    layers = decoder_layers(model)
    if not 0 <= hook.layer < len(layers):
        raise HookError(f"hook {hook.name} asks for layer {hook.layer}, but {type(model).__name__} has "
                        f"{len(layers)} layers (0..{len(layers) - 1})")
    captured: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> None:
        captured.append(tensor.detach())
        if stop_early:
            raise _StopForward

    layer = layers[hook.layer]
    if hook.position == "post":
        handle = layer.register_forward_hook(lambda module, args, output: keep(_hidden_states(output)))
    else:
        handle = layer.register_forward_pre_hook(
            lambda module, args, kwargs: keep(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise HookError(f"the forward pass of {type(model).__name__} never reached {hook.name}")
    return captured[0]
