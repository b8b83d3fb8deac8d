"""Recipe schema: validation with lines and suggestions, overrides, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import RecipeError
from llmops.train.recipe import Recipe, load_recipe, parse_overrides, parse_recipe

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
base_model: models/tiny
dataset: {path: data/chat.jsonl, format: chat}
output: {name: out}
"""


def test_defaults_live_in_the_schema() -> None:
    recipe = parse_recipe(GOOD)
    assert (recipe.method, recipe.trainer) == ("lora", "sft")
    assert recipe.lora.target_modules == "all-linear"
    assert recipe.training.save_total_limit >= 2
    assert recipe.merged_name == "out-merged"


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_says_how_to_run_it(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.output.name
    assert f"llmops train recipes/{path.name}" in path.read_text()


def test_shipped_recipes_cover_every_method_and_trainer() -> None:
    recipes = [load_recipe(p) for p in (REPO / "recipes").glob("*.yaml")]
    assert {r.method for r in recipes} == {"lora", "qlora", "dora"}
    assert {r.trainer for r in recipes} == {"sft", "dpo"}


def test_every_problem_is_reported_at_once_with_lines_and_suggestions() -> None:
    text = GOOD + "lora:\n  r: 0\n  alpah: 3\ntraining:\n  max_step: 5\n"
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, path="r.yaml")
    message = str(info.value)
    assert message.startswith("r.yaml:5:")
    assert "lora.r: Input should be greater than or equal to 1" in message
    assert "line 6: unknown field 'lora.alpah' (did you mean 'alpha'?)" in message
    assert "line 8: unknown field 'training.max_step' (did you mean 'max_steps'?)" in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("base_model: [unclosed", r"<recipe>:1:.*malformed YAML"),
        ("- a\n- b\n", "expected a mapping of recipe fields, got list"),
        ("base_model: x\nbase_model: y\n", "duplicate key 'base_model'"),
        (GOOD + "method: lorra\n", "method: Input should be 'lora', 'qlora' or 'dora'"),
        (GOOD.replace("path: data/chat.jsonl, ", ""), "give exactly one of 'path' or 'artifact'"),
        (GOOD.replace("chat}", "preference}"), "trainer 'sft' takes 'chat' or 'prompt-completion'"),
        (GOOD + "training: {eval_steps: 5}\n", "eval_steps needs dataset.eval_path"),
        (GOOD + "format_version: 7\n", "format_version 7 is not supported"),
        ("", "base_model: Field required"),
    ],
)
def test_malformed_recipes(text: str, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        parse_recipe(text)


def test_overrides_are_typed_and_validated_like_the_file() -> None:
    sets = parse_overrides(["training.max_steps=200", "lora.target_modules=[q_proj, v_proj]"])
    recipe = parse_recipe(GOOD, overrides=sets)
    assert recipe.training.max_steps == 200
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(RecipeError, match=r"did you mean 'max_steps'\?\) \(from --set training"):
        parse_recipe(GOOD, overrides=parse_overrides(["training.max_stepz=3"]))
    with pytest.raises(RecipeError, match="is not key=value"):
        parse_overrides(["training.max_steps"])


def test_the_recipe_hash_covers_resolved_values() -> None:
    a = parse_recipe(GOOD)
    b = parse_recipe(GOOD + "training: {max_steps: 100}\n")  # the default, written out
    c = parse_recipe(GOOD, overrides={"training.seed": 1})
    assert a.digest() == b.digest() != c.digest()
    assert (
        Recipe.model_validate(
            {k: v for k, v in a.resolved().items() if k != "format_version"}
        ).digest()
        == a.digest()
    )


def test_missing_and_binary_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"base_model: \xff\n")
    with pytest.raises(RecipeError, match="not valid UTF-8 at byte 12"):
        load_recipe(bad)


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["training.seed=1099511627776"], "training.seed: Input should be less than or equal to"),
        (["training.seed=-1"], "training.seed: Input should be greater than or equal to 0"),
        (["lora.alpha=.inf"], "lora.alpha: Input should be a finite number"),
        (["training.learning_rate=.nan"], "training.learning_rate: Input should be a finite"),
        (["output.name=bad name/../x"], "output.name: invalid artifact name"),
    ],
)
def test_values_that_would_fail_only_after_training_are_refused_up_front(
    sets: list[str], match: str
) -> None:
    with pytest.raises(RecipeError, match=match):
        parse_recipe(GOOD, overrides=parse_overrides(sets))


def test_num_epochs_or_max_steps_not_both_and_the_steps_it_computes() -> None:
    recipe = parse_recipe(GOOD + "training: {num_epochs: 2, batch_size: 4}\n")
    assert recipe.training.steps_for(10) == 6  # 3 batches per epoch, two epochs
    assert recipe.training.steps_for(10, world=2) == 4  # 2 batches per process per epoch
    accumulated = parse_recipe(GOOD + "training: {num_epochs: 1, gradient_accumulation_steps: 8}\n")
    assert accumulated.training.steps_for(12) == 1  # never zero steps
    assert parse_recipe(GOOD).training.steps_for(10_000) == 100  # max_steps when no epochs
    with pytest.raises(
        RecipeError, match=r"r.yaml:6: training gives both max_steps and num_epochs"
    ):
        parse_recipe(GOOD + "training:\n  max_steps: 5\n  num_epochs: 1\n", path="r.yaml")
    with pytest.raises(RecipeError, match="both max_steps and num_epochs"):
        parse_recipe(GOOD + "training: {num_epochs: 1}\n", overrides={"training.max_steps": 3})
    # A shipped recipe gives max_steps: --set training.max_steps=null drops it for num_epochs.
    switched = parse_recipe(
        GOOD + "training: {max_steps: 5}\n",
        overrides=parse_overrides(["training.max_steps=null", "training.num_epochs=2"]),
    )
    assert switched.training.num_epochs == 2
    with pytest.raises(RecipeError, match="must be a number of epochs"):
        parse_recipe(GOOD + "training: {num_epochs: true}\n")


def test_report_to_takes_one_tracker_or_a_list_of_known_ones() -> None:
    assert parse_recipe(GOOD + "training: {report_to: tensorboard}\n").training.report_to == [
        "tensorboard"
    ]
    assert parse_recipe(GOOD).training.report_to == []
    with pytest.raises(RecipeError, match=r"training\.report_to\.0: Input should be 'tensorboard'"):
        parse_recipe(GOOD + "training: {report_to: [comet]}\n")


def test_a_boolean_seed_is_refused() -> None:
    with pytest.raises(RecipeError, match=r"training\.seed: Input should be a valid integer"):
        parse_recipe(GOOD + "training: {seed: true}\n")
