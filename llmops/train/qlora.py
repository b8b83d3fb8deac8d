"""QLoRA: a 4-bit base (bitsandbytes) under a full-precision LoRA adapter.

Two things here keep QLoRA honest:

- :func:`check_backend` proves bitsandbytes can quantize on the target device *before* the model is
  loaded, so a missing or broken backend is one clear error, not a stack trace minutes in.
- :func:`keep_trainable_layout` guards against a bitsandbytes (0.50) trap on CPUs with AVX512-BF16:
  an eval-mode forward without gradients (``generate``, an eval loop) repacks 4-bit weights into an
  inference-only layout whose kernel has no autograd, and later training steps then get wrong or
  zero LoRA gradients with nothing but a torch warning. The guard turns that repacking off and
  undoes any that already happened; the runner calls it before every training step.
"""

from __future__ import annotations

from typing import Any

from llmops.errors import BackendUnavailableError

__all__ = ["check_backend", "keep_trainable_layout", "quantization_config"]

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def check_backend(device: str) -> None:
    """Quantize and dequantize a small tensor with bitsandbytes on ``device``.

    Raises:
        BackendUnavailableError: bitsandbytes is missing or cannot run 4-bit there.
    """
    try:
        import bitsandbytes.functional as bnbf
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"method 'qlora' needs bitsandbytes, which cannot be imported ({exc})",
            hint="pip install 'llmops[train]' (bitsandbytes>=0.45), or use method 'lora'",
        ) from None
    try:
        probe = torch.linspace(-1, 1, 64 * 64, device=device).reshape(64, 64)
        packed, state = bnbf.quantize_4bit(probe, quant_type="nf4")
        restored = bnbf.dequantize_4bit(packed, state)
        if not torch.allclose(restored, probe, atol=0.2):
            raise RuntimeError("4-bit round trip gave wrong values")
    except Exception as exc:
        raise BackendUnavailableError(
            f"bitsandbytes cannot run 4-bit quantization on {device!r}: "
            f"{type(exc).__name__}: {exc}",
            hint="use method 'lora', or run on a machine where bitsandbytes supports the device",
        ) from None


def quantization_config(
    *, quant_type: str, double_quant: bool, compute_dtype: str
) -> Any:  # transformers.BitsAndBytesConfig
    """The transformers config that loads a base model in 4 bits for QLoRA."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=getattr(torch, _DTYPES[compute_dtype]),
    )


def keep_trainable_layout(model: Any) -> int:
    """Make every 4-bit layer of ``model`` keep (or return to) the layout training needs.

    Returns:
        How many layers had been repacked for inference and were restored.
    """
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    restored = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        # The flag that lets an eval forward repack the weight for the AVX512-BF16 kernel.
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, state
            )
            restored += 1
    return restored
