"""The llmops error tree.

Every error the library raises on purpose is an :class:`LLMOpsError`. Each one renders as a single
line that says what was wrong, where, and what to do next; the CLI prints exactly that line and
exits with :attr:`LLMOpsError.exit_code`.

::

    LLMOpsError
    ├── InputError                      bad input from the user (exit code 2)
    │   ├── ConfigError                 llmops.toml or an environment override is wrong
    │   ├── InvalidReferenceError       a reference such as ``name@3`` does not parse
    │   ├── InvalidNameError            a name has path separators, spaces or control characters
    │   ├── DocumentError               a YAML document is malformed (file, line and column)
    │   │   ├── PromptFileError         ... a prompt file
    │   │   ├── RecipeError             ... a fine-tuning recipe
    │   │   ├── SuiteError              ... an eval suite (or its cases file)
    │   │   └── PolicyError             ... a model's promotion policy
    │   ├── DatasetError                a dataset cannot be read or has the wrong schema
    │   ├── MissingDependencyError      an optional package is not installed (names the extra)
    │   ├── PromptRenderError           a render failed: missing/unknown/mistyped variable, template
    │   │   ├── TemplateSecurityError   a template tried to leave the sandbox
    │   │   └── TemplateLimitError      a template exceeded the output size or time limit
    │   └── UnsafeFileError             pickle weights, a bad safetensors header, an unsafe path
    ├── NotFoundError                   something named does not exist (exit code 2)
    │   ├── WorkspaceNotFoundError
    │   ├── PromptNotFoundError
    │   ├── ArtifactNotFoundError
    │   ├── RunNotFoundError
    │   └── EvalRunNotFoundError
    ├── CheckFailedError                a check or gate failed (exit code 1)
    │   ├── DataGateError               the data gate refused a dataset
    │   ├── EvalGateError               an eval run regressed against its baseline or thresholds
    │   └── PromotionError              a promotion's policy conditions do not hold
    ├── ConflictError                   another writer changed it first; run it again (exit 1)
    ├── ServingError                    a backend could not start, be reached, or answer (exit 1)
    ├── TrainingError                   training could not start or stopped (exit code 1)
    │   └── BackendUnavailableError     a required backend (bitsandbytes, CUDA) is not usable
    ├── DatabaseError                   the registry database failed (exit code 2)
    │   └── DatabaseUnavailableError    it cannot be reached, or stayed locked too long
    └── StoreError                      the artifact store failed: missing/corrupt data, S3 errors
        └── StoreFullError              the store ran out of space (nothing became visible)

Builtin ``ValueError`` and ``TypeError`` are kept for plain programming mistakes in arguments.
"""

from __future__ import annotations

__all__ = [
    "ArtifactNotFoundError",
    "BackendUnavailableError",
    "CheckFailedError",
    "ConfigError",
    "ConflictError",
    "DataGateError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DatasetError",
    "DocumentError",
    "EvalGateError",
    "EvalRunNotFoundError",
    "InputError",
    "InvalidNameError",
    "InvalidReferenceError",
    "LLMOpsError",
    "MissingDependencyError",
    "NotFoundError",
    "PolicyError",
    "PromotionError",
    "PromptFileError",
    "PromptNotFoundError",
    "PromptRenderError",
    "RecipeError",
    "RunNotFoundError",
    "ServingError",
    "StoreError",
    "StoreFullError",
    "SuiteError",
    "TemplateLimitError",
    "TemplateSecurityError",
    "TrainingError",
    "UnsafeFileError",
    "WorkspaceNotFoundError",
]


class LLMOpsError(Exception):
    """Base of every error llmops raises on purpose.

    Args:
        message: What went wrong and where, in one sentence.
        hint: What to do about it; appended after the message.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message and hint as a single line (newlines in either are flattened)."""
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class InputError(LLMOpsError):
    """The user gave llmops something it cannot use."""


class ConfigError(InputError):
    """The workspace configuration or an environment override is invalid."""


class InvalidReferenceError(InputError):
    """A reference string (``name``, ``name@3``, ``name@label``, ``sha256:...``) is malformed."""


class InvalidNameError(InputError):
    """A prompt, label or artifact name is not allowed."""


class DocumentError(InputError):
    """A YAML document (prompt file, recipe, suite) could not be parsed or validated.

    Attributes:
        path: The file, when the content came from one.
        line: 1-based line of the problem, when known.
        column: 1-based column of the problem, when known.
    """

    default_where = "<document>"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.detail = message
        where = path or self.default_where
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}", hint=hint)

    def at(self, path: str) -> DocumentError:
        """This error, placed in ``path`` when it was raised without a file."""
        if self.path is not None:
            return self
        return type(self)(
            self.detail, path=path, line=self.line, column=self.column, hint=self.hint
        )


class PromptFileError(DocumentError):
    """A prompt file could not be parsed or validated."""

    default_where = "<prompt>"


class RecipeError(DocumentError):
    """A fine-tuning recipe could not be parsed or validated."""

    default_where = "<recipe>"


class SuiteError(DocumentError):
    """An eval suite or its cases file could not be parsed or validated."""

    default_where = "<suite>"


class PolicyError(DocumentError):
    """A model's promotion policy could not be parsed or validated."""

    default_where = "<policy>"


class DatasetError(InputError):
    """A dataset cannot be read, or its rows do not have the schema its format needs."""


class PromptRenderError(InputError):
    """Rendering a prompt failed because of its variables or its template."""


class TemplateSecurityError(PromptRenderError):
    """A template tried something the sandbox forbids (private attributes, imports, ...)."""


class TemplateLimitError(PromptRenderError):
    """A template exceeded the output size or render time limit."""


class NotFoundError(LLMOpsError):
    """A named thing does not exist."""


class WorkspaceNotFoundError(NotFoundError):
    """No llmops workspace could be found."""


class PromptNotFoundError(NotFoundError):
    """A prompt, version or label does not exist."""


class RunNotFoundError(NotFoundError):
    """A training run does not exist."""


class EvalRunNotFoundError(NotFoundError):
    """An eval run does not exist."""


class CheckFailedError(LLMOpsError):
    """A check or gate ran and failed."""

    exit_code = 1


class DataGateError(CheckFailedError):
    """The data gate refused a dataset (the report has the findings and row numbers)."""


class EvalGateError(CheckFailedError):
    """An eval run regressed against its baseline or missed a threshold."""


class PromotionError(CheckFailedError):
    """A promotion was refused: conditions of the model's policy do not hold."""


class ConflictError(LLMOpsError):
    """Another writer changed the same thing first (an alias moved during a promotion)."""

    exit_code = 1


class ServingError(LLMOpsError):
    """A serving backend could not start, be reached, or answer as it should."""

    exit_code = 1


class TrainingError(LLMOpsError):
    """Training could not start, or stopped (disk full, a crash); checkpoints stay intact."""

    exit_code = 1


class BackendUnavailableError(TrainingError):
    """A backend the recipe needs (bitsandbytes 4-bit, CUDA, a device) is not usable here."""


class DatabaseError(LLMOpsError):
    """The registry database failed."""


class DatabaseUnavailableError(DatabaseError):
    """The registry database cannot be reached or stayed locked past the busy timeout."""


class MissingDependencyError(InputError):
    """An optional dependency is not installed; the hint names the extra that installs it."""


class UnsafeFileError(InputError):
    """A file is refused: pickle weights, a malformed safetensors header, or an unsafe path."""


class ArtifactNotFoundError(NotFoundError):
    """An artifact, version, alias or digest does not exist."""


class StoreError(LLMOpsError):
    """The artifact store failed (unreachable, missing or corrupt data, repeated server errors)."""


class StoreFullError(StoreError):
    """The store ran out of space; nothing was made visible."""
