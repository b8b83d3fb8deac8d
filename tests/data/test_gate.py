"""The data gate: each check, with row numbers, thresholds and fingerprints."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from llmops.data import GateThresholds, split_indices, validate_dataset
from llmops.data.dedup import near_duplicates
from llmops.errors import DataGateError, DatasetError
from tests.train.conftest import chat_rows, preference_rows, write_jsonl


def _finding(report: Any, check: str) -> Any:
    found = [f for f in report.findings if f.check == check]
    assert found, f"no {check} finding in {[f.check for f in report.findings]}"
    return found[0]


def test_a_clean_dataset_passes_with_a_fingerprint(tmp_path: Path) -> None:
    report = validate_dataset(write_jsonl(tmp_path / "d.jsonl", chat_rows()), "chat")
    assert report.ok and report.findings == [] and report.rows == 40
    assert report.fingerprint.startswith("blake3:")
    report.raise_if_failed()


def test_each_problem_is_reported_with_its_row_numbers(tmp_path: Path) -> None:
    rows = chat_rows(30)
    rows[2]["messages"][0]["content"] = " \n\t"
    rows[5] = {"messages": [{"role": "wizard", "content": "x"}]}
    rows[6] = {"messages": [{"role": "user", "content": "no answer"}]}
    rows[7] = {"text": "wrong schema"}
    rows[9] = dict(rows[0])
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with path.open("ab") as f:
        f.write(b"{not json\n")
        f.write(b'{"messages": "\xff\xfe"}\n')
        f.write(b"[1, 2]\n")
    report = validate_dataset(path, "chat")
    assert not report.ok
    assert _finding(report, "empty_turn").rows == [3]
    assert _finding(report, "schema").rows == [6, 7, 8]
    assert "role is 'wizard'" in _finding(report, "schema").message
    assert _finding(report, "exact_duplicate").rows == [10]
    assert _finding(report, "exact_duplicate").message == "repeats row 1"
    assert _finding(report, "invalid_json").rows == [31, 33]
    assert _finding(report, "invalid_utf8").rows == [32]
    with pytest.raises(DataGateError, match=r"the data gate failed: .*row 3"):
        report.raise_if_failed()


def test_thresholds_turn_small_counts_into_warnings(tmp_path: Path) -> None:
    rows = chat_rows(100)
    rows[50] = dict(rows[49])
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert validate_dataset(path, "chat").ok  # 1% duplicates: at the default threshold
    strict = validate_dataset(path, "chat", thresholds=GateThresholds(exact_duplicate=0))
    finding = _finding(strict, "exact_duplicate")
    assert not strict.ok and finding.fails and finding.to_json()["severity"] == "error"


def test_near_duplicates_are_found_and_distinct_rows_are_not() -> None:
    texts = [
        "The quick brown fox jumps over the lazy dog near the river bank today.",
        "Completely unrelated sentence about databases and write-ahead logs.",
        "the quick brown fox jumps over the lazy dog near the river bank today!",
        "The quick brown fox jumps over the lazy cat near the river bank today.",
    ]
    assert near_duplicates(texts) == [(2, 0)]


def test_short_rows_are_one_shingle_of_all_their_words() -> None:
    texts = ["", "a", "a b", "one two", "A B!", "", "b a", "one two three"]
    # Rows of fewer than three words match only rows of the same words in the same order.
    assert near_duplicates(texts) == [(4, 2), (5, 0)]


def test_each_row_gets_its_own_minhash_signature() -> None:
    from llmops.data.dedup import _shingle_hashes

    texts = ["w1 w2 w3 w4 w5", "", "x y", "p q r"]
    hashes, offsets = _shingle_hashes(texts)
    assert offsets.tolist() == [0, 3, 4, 5] and len(hashes) == 6  # 3 + 1 + 1 + 1 3-grams
    again, _ = _shingle_hashes(["p q r", "w1 w2 w3 w4 w5"])
    assert again[0] == hashes[5] and again[1:4].tolist() == hashes[:3].tolist()


def test_near_duplicate_rows_in_a_dataset(tmp_path: Path) -> None:
    rows = chat_rows(20)
    rows.append({"messages": [{"role": "user", "content": "WHAT is 3 plus 3?"},
                              {"role": "assistant", "content": "3 plus 3 equals 6!"}]})  # fmt: skip
    report = validate_dataset(write_jsonl(tmp_path / "d.jsonl", rows), "chat")
    finding = _finding(report, "near_duplicate")
    assert finding.rows == [21] and finding.message == "nearly repeats row 4"


def test_train_eval_overlap_from_a_file_and_from_a_split(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(20))
    leaked = chat_rows(25)[18:]  # rows 18 and 19 are also in train
    evals = write_jsonl(tmp_path / "eval.jsonl", leaked)
    report = validate_dataset(train, "chat", eval_path=evals)
    finding = _finding(report, "train_eval_overlap")
    assert finding.rows == [1, 2] and report.eval_rows == 7 and not report.ok
    # A split of a dataset with repeated prompts leaks them across the split.
    rows = chat_rows(20) + [
        {"messages": [r["messages"][0], {"role": "assistant", "content": "another answer"}]}
        for r in chat_rows(20)
    ]
    report = validate_dataset(
        write_jsonl(tmp_path / "d.jsonl", rows), "chat", eval_fraction=0.25, seed=3
    )
    assert _finding(report, "train_eval_overlap").count > 0


def test_split_is_seeded_and_disjoint() -> None:
    a = split_indices(100, 0.1, seed=1)
    assert a == split_indices(100, 0.1, seed=1) != split_indices(100, 0.1, seed=2)
    train, evals = a
    assert len(evals) == 10 and not set(train) & set(evals) and len(train) + len(evals) == 100


def test_preference_rows(tmp_path: Path) -> None:
    rows = preference_rows(10)
    rows[3]["rejected"] = rows[3]["chosen"]
    rows[4] = {"prompt": "p", "chosen": 5, "rejected": "r"}
    report = validate_dataset(write_jsonl(tmp_path / "p.jsonl", rows), "preference")
    assert _finding(report, "chosen_equals_rejected").rows == [4]
    assert "'chosen' must be a string or a list of messages" in _finding(report, "schema").message


def test_token_lengths_and_templates_need_the_tokenizer(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = chat_rows(10)
    rows[7]["messages"][1]["content"] = "one two three " * 40
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    report = validate_dataset(path, "chat", tokenizer=tok, max_length=64)
    finding = _finding(report, "truncated")
    assert finding.rows == [8] and "over max_length 64" in finding.message
    assert report.max_tokens is not None and report.max_tokens > 64
    broken = validate_dataset(
        path, "chat", tokenizer=tok, chat_template="{{ raise_exception('no system role') }}"
    )
    assert _finding(broken, "template").count == 10
    assert "no system role" in _finding(broken, "template").message


def _as_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["messages"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"messages": json.dumps(row["messages"])})
    return path


def test_csv_and_parquet_give_the_same_rows_and_fingerprint(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = chat_rows(12)
    jsonl = validate_dataset(write_jsonl(tmp_path / "d.jsonl", rows), "chat")
    from_csv = validate_dataset(_as_csv(tmp_path / "d.csv", rows), "chat")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    from_parquet = validate_dataset(tmp_path / "d.parquet", "chat")
    assert jsonl.fingerprint == from_csv.fingerprint == from_parquet.fingerprint
    assert from_csv.ok and from_parquet.ok and from_parquet.rows == 12


def test_invalid_utf8_in_csv_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"prompt,completion\nhello,world\nbad \xff,x\n")
    report = validate_dataset(path, "prompt-completion")
    assert _finding(report, "invalid_utf8").rows == [2]


@pytest.mark.parametrize(
    ("name", "fmt", "match"),
    [
        ("d.txt", "chat", "unknown dataset file type '.txt'"),
        ("missing.jsonl", "chat", "no such dataset file"),
        ("d.jsonl", "sharegpt", "unknown dataset format 'sharegpt'"),
    ],
)
def test_unusable_inputs(tmp_path: Path, name: str, fmt: str, match: str) -> None:
    (tmp_path / "d.txt").write_text("x")
    (tmp_path / "d.jsonl").write_text("{}\n")
    with pytest.raises(DatasetError, match=match):
        validate_dataset(tmp_path / name, fmt)


def test_hostile_json_rows_are_findings_not_crashes(tmp_path: Path) -> None:
    good = json.dumps(chat_rows(1)[0])
    lines = [
        good,
        '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"x": ' + "1" * 100_000 + "}",
        '{"messages": [{"role": "user", "content": "hi \\ud800"}]}',
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate_dataset(path, "chat")
    (finding,) = [f for f in report.findings if f.check == "invalid_json"]
    assert finding.rows == [2, 3, 4] and finding.fails
    assert report.rows == 4


class _NoTemplate:
    chat_template = None


def test_a_missing_eval_file_is_reported_before_a_missing_chat_template(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(3))
    with pytest.raises(DatasetError, match=r"missing\.jsonl"):
        validate_dataset(
            path, "chat", tokenizer=_NoTemplate(), eval_path=tmp_path / "missing.jsonl"
        )


def test_a_missing_chat_template_is_an_error_even_without_valid_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"nope": 1}])
    with pytest.raises(DatasetError, match="no chat template"):
        validate_dataset(path, "chat", tokenizer=_NoTemplate())
    assert validate_dataset(path, "chat").findings  # without a tokenizer: a schema finding
