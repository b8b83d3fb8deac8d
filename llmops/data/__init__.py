"""Datasets for fine-tuning: file formats and the data gate that checks them before training."""

from llmops.data.formats import FORMATS, ROLES, BadRow, DatasetFormat, Row, read_rows
from llmops.data.gate import (
    DataReport,
    Finding,
    GateThresholds,
    load_split,
    split_indices,
    validate_dataset,
)

__all__ = [
    "FORMATS",
    "ROLES",
    "BadRow",
    "DataReport",
    "DatasetFormat",
    "Finding",
    "GateThresholds",
    "Row",
    "load_split",
    "read_rows",
    "split_indices",
    "validate_dataset",
]
