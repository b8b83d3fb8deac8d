"""Fine-tuning: recipes (LoRA, QLoRA, DoRA with SFT or DPO) run on trl + peft, tracked runs,
checkpoints and resume, adapters stored with lineage.

Heavy libraries (torch, transformers, trl, peft) load only when a run starts.
"""

from llmops.train.recipe import Recipe, load_recipe, parse_overrides
from llmops.train.runner import TrainResult, train
from llmops.train.runs import RunRecord, Runs

__all__ = ["Recipe", "RunRecord", "Runs", "TrainResult", "load_recipe", "parse_overrides", "train"]
