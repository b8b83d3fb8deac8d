"""QLoRA gradients against a dequantized full-precision reference, also after the inference
forwards (generate, eval) that trip bitsandbytes' CPU repacking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
bnb = pytest.importorskip("bitsandbytes")


def _models(tiny_model: Path) -> tuple[Any, Any]:
    """A 4-bit model with LoRA, and a float32 twin holding its dequantized weights and the same
    LoRA weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmops.train.qlora import quantization_config

    q = AutoModelForCausalLM.from_pretrained(
        tiny_model,
        quantization_config=quantization_config(
            quant_type="nf4", double_quant=True, compute_dtype="float32"
        ),
        device_map={"": "cpu"},
    )
    ref = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ref_modules = dict(ref.named_modules())
    for name, module in q.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = module.weight
            deq = bnb.functional.dequantize_4bit(w.data, w.quant_state)
            ref_modules[name].weight.data.copy_(deq)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                        lora_dropout=0.0, task_type="CAUSAL_LM")  # fmt: skip
    torch.manual_seed(0)
    q = get_peft_model(q, config)
    ref = get_peft_model(ref, config)
    lora = {k: v for k, v in q.state_dict().items() if "lora_" in k}
    assert not ref.load_state_dict(lora, strict=False).unexpected_keys
    q.train()
    ref.train()
    return q, ref


def _lora_grads(model: Any, ids: Any) -> dict[str, Any]:
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _worst(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12)) for k in a)


def _force_avx512bf16(model: Any) -> None:
    """Make bitsandbytes behave as on a CPU with AVX512-BF16 (where the repacking happens)."""
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = True


def _inference_forward(model: Any, ids: Any) -> None:
    """An eval-mode forward without gradients on a CPU with AVX512-BF16 (simulated)."""
    _force_avx512bf16(model)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()


def _packed(model: Any) -> int:
    return sum(
        bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False))
        for m in model.modules()
        if isinstance(m, bnb.nn.Linear4bit)
    )


IDS = [[1, 17, 42, 99, 7, 3, 250, 12, 64, 5]]


@pytest.fixture
def pair(tiny_model: Path) -> tuple[Any, Any]:
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):  # peft vs transformers
        return _models(tiny_model)


def test_qlora_gradients_match_the_dequantized_reference(pair: tuple[Any, Any]) -> None:
    q, ref = pair
    ids = torch.tensor(IDS)
    assert _worst(_lora_grads(q, ids), _lora_grads(ref, ids)) < 1e-4


@pytest.mark.parametrize("inference", ["generate", "eval_forward"])
def test_gradients_stay_right_after_an_inference_forward(
    pair: tuple[Any, Any], inference: str
) -> None:
    """As the runner does: the guard runs when the model is loaded and before every step."""
    from llmops.train.qlora import keep_trainable_layout

    q, ref = pair
    ids = torch.tensor(IDS)
    expected = _lora_grads(ref, ids)
    _force_avx512bf16(q)  # as bitsandbytes sets it on a CPU with AVX512-BF16
    assert keep_trainable_layout(q) == 0
    for _ in range(2):  # an inference forward in the middle of training, twice
        q.eval()
        with torch.no_grad():
            if inference == "generate":
                q.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
            else:
                q(input_ids=ids)
        q.train()
        keep_trainable_layout(q)
        assert _packed(q) == 0
        assert _worst(_lora_grads(q, ids), expected) < 1e-4


def test_weights_repacked_before_the_guard_ran_are_restored(pair: tuple[Any, Any]) -> None:
    """A forward that happened before the guard (e.g. a user's generate) is undone; the
    round trip through the inference layout rounds the block scales, hence the looser bound."""
    from llmops.train.qlora import keep_trainable_layout

    q, ref = pair
    ids = torch.tensor(IDS)
    expected = _lora_grads(ref, ids)
    _inference_forward(q, ids)
    armed = _packed(q)
    assert armed > 0  # the trap is armed: weights are in the inference-only layout
    assert keep_trainable_layout(q) == armed
    assert _packed(q) == 0
    assert _worst(_lora_grads(q, ids), expected) < 2e-2


def test_without_the_guard_the_gradients_go_wrong(pair: tuple[Any, Any]) -> None:
    """The trap is real: this is what QLoRA training would silently get."""
    q, ref = pair
    ids = torch.tensor(IDS)
    expected = _lora_grads(ref, ids)
    _inference_forward(q, ids)
    with pytest.warns(UserWarning):  # torch: no grad_fn through the inference kernel
        got = _lora_grads(q, ids)
    assert _worst(got, expected) > 0.2
