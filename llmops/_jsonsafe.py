"""JSON from strangers: one parse that turns every way a document can hurt the parser into a
clear ``ValueError``: nesting deeper than the interpreter's stack (``RecursionError``), integers
too long to convert, and lone surrogate escapes (``"\\ud800"``) that cannot be stored or hashed
as UTF-8 later."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises only ``ValueError`` (``json.JSONDecodeError`` included) with
    a message saying what was wrong."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise ValueError(f"JSON number too large ({exc})") from None
    escaped = b"\\u" in text if isinstance(text, bytes) else "\\u" in text
    if escaped:
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "JSON holds a lone surrogate escape (e.g. \\ud800), which is not valid Unicode"
            ) from None
        except RecursionError:  # pragma: no cover - parsed fine, so it serialises fine
            raise ValueError("JSON nested too deeply") from None
    return data
