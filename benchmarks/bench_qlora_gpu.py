"""QLoRA SFT speed on a GPU (issue: recipes). Run on a CUDA machine:

    python benchmarks/bench_qlora_gpu.py [--layers 32] [--steps 20] [--seq 2048]

A randomly initialised Llama-3-8B-shaped model (no weights needed to measure speed) is written once
as bf16 safetensors, then trained for --steps QLoRA steps at sequence length --seq, twice in
separate processes: through the llmops recipe runner, and written directly against trl + peft +
bitsandbytes with the same settings. Prints tokens/s, peak GPU memory and MFU for both.

MFU counts 6 x parameters x tokens FLOPs per step (the usual dense-training convention; LoRA skips
the frozen weights' gradients, so this overstates the work slightly and the MFU is an upper bound)
against the GPU's dense bf16 peak (--peak-tflops, 989 for H100/H200 SXM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LLAMA3_8B = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
}  # fmt: skip

COMMON = """
import json, sys, time, torch
ws, steps, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [{"prompt": "x " * (seq // 2), "completion": "y " * (seq // 2)} for _ in range(64)]
"""

DIRECT = COMMON + textwrap.dedent("""
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer
    tok = AutoTokenizer.from_pretrained(ws + "/model")
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(ws + "/model", quantization_config=q,
        dtype=torch.bfloat16, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    args = SFTConfig(output_dir=ws + "/direct", max_steps=steps, per_device_train_batch_size=1,
        learning_rate=2e-4, max_length=seq, logging_steps=1, save_strategy="no", report_to=[],
        disable_tqdm=True, bf16=True, activation_checkpointing=True, seed=42)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
        task_type="CAUSAL_LM")
    torch.cuda.reset_peak_memory_stats()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok, peft_config=peft)
    out = trainer.train()
    tokens = trainer.state.log_history[-2]["num_tokens"]
    print(json.dumps({"seconds": out.metrics["train_runtime"], "tokens": tokens,
                      "peak_gib": torch.cuda.max_memory_allocated() / 2**30}))
""")

RUNNER = COMMON + textwrap.dedent("""
    from pathlib import Path
    from llmops import Workspace
    from llmops.train import Recipe
    data = Path(ws) / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\\n" for r in rows))
    w = Workspace.init(Path(ws) / "llmops-ws", examples=False)
    recipe = Recipe.model_validate({
        "base_model": ws + "/model", "method": "qlora", "trainer": "sft",
        "dataset": {"path": str(data), "format": "prompt-completion"},
        "quantization": {"compute_dtype": "bfloat16"}, "lora": {"r": 16, "alpha": 32},
        "training": {"max_steps": steps, "max_length": seq, "batch_size": 1,
                     "learning_rate": 2e-4, "save_steps": 10**6, "precision": "bf16",
                     "gradient_checkpointing": True, "seed": 42},
        "gate": {"exact_duplicate": 1.0, "near_duplicate": 1.0, "truncated": 1.0},
        "output": {"name": "bench-qlora"}})
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = w.train(recipe)
    metrics = [m for m in w.runs.metrics(result.run.run_id) if m["split"] == "train"]
    tps = sorted(m["tokens_per_s"] for m in metrics if "tokens_per_s" in m)
    print(json.dumps({"tokens_per_s": tps[len(tps) // 2], "wall": time.perf_counter() - t0,
                      "peak_gib": torch.cuda.max_memory_allocated() / 2**30}))
""")


def make_model(folder: Path, layers: int) -> int:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(num_hidden_layers=layers, **LLAMA3_8B)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    vocab = {f"t{i}": i for i in range(LLAMA3_8B["vocab_size"] - 2)} | {"x": 10, "y": 11}
    bpe = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="t1", pad_token="t2")
    tok.save_pretrained(folder)
    return params


def run(script: str, ws: Path, steps: int, seq: int) -> dict[str, float]:
    path = ws / "script.py"
    path.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(path), str(ws), str(steps), str(seq)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    print(torch.cuda.get_device_name(0), flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ws = Path(tmp)
        t0 = time.perf_counter()
        params = make_model(ws / "model", args.layers)
        print(
            f"random Llama-3-8B-shaped model, {args.layers} layers, {params / 1e9:.2f} B params, "
            f"written in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        direct = run(DIRECT, ws, args.steps, args.seq)
        direct["tokens_per_s"] = direct["tokens"] / direct["seconds"]
        ours = run(RUNNER, ws, args.steps, args.seq)
        for label, r in (("trl + peft", direct), ("llmops", ours)):
            mfu = 6 * params * r["tokens_per_s"] / (args.peak_tflops * 1e12)
            print(
                f"{label:>10}: {r['tokens_per_s']:8.0f} tok/s  peak {r['peak_gib']:6.1f} GiB  "
                f"MFU {mfu:.1%}"
            )
        print(f"tokens/s ratio llmops / trl: {ours['tokens_per_s'] / direct['tokens_per_s']:.3f}")
        print(
            json.dumps(
                {
                    "params": params,
                    "direct": direct,
                    "llmops": ours,
                    "gpu": torch.cuda.get_device_name(0),
                    "env": {k: v for k, v in os.environ.items() if k.startswith("CUDA")},
                }
            )
        )


if __name__ == "__main__":
    main()
