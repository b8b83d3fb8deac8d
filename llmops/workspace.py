"""The workspace: a folder with ``llmops.toml``, its registry database and its content.

Resolution (DESIGN.md section 3): an explicit path (``--workspace DIR``), else ``LLMOPS_WORKSPACE``,
else the nearest ``llmops.toml`` upward from the current directory. ``LLMOPS_DB_URL`` overrides the
database location and ``LLMOPS_STORE_URL`` the artifact store location.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.errors import ConfigError, InputError, WorkspaceNotFoundError
from llmops.refs import local_path

if TYPE_CHECKING:
    from llmops.artifacts import ArtifactStore, ArtifactVersion
    from llmops.artifacts.resolver import ModelResolver, ModelSource
    from llmops.db import Database
    from llmops.evals.results import EvalRuns
    from llmops.evals.reviews import Reviews
    from llmops.evals.runner import EvalOutcome
    from llmops.evals.suite import LoadedSuite
    from llmops.pipelines import PipelineRunRecord, Pipelines
    from llmops.prompts import PromptRegistry
    from llmops.registry import ModelRegistry
    from llmops.registry.lineage import Lineage
    from llmops.serve import Serving
    from llmops.train.recipe import Recipe
    from llmops.train.runner import TrainResult
    from llmops.train.runs import Runs

__all__ = ["CONFIG_FILE", "ModelSource", "Workspace", "WorkspaceConfig"]

CONFIG_FILE = "llmops.toml"
_STATE_DIR = ".llmops"
_EXAMPLE_DIRS = ("prompts", "evals", "recipes")
_EXAMPLE_FILES = ("pipeline.yaml",)


def __getattr__(name: str) -> Any:
    # ``ModelSource`` moved to llmops.artifacts.resolver; kept importable from here, lazily
    # (importing the store here would make ``import llmops`` heavy).
    if name == "ModelSource":
        from llmops.artifacts.resolver import ModelSource

        return ModelSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    """``[database]``: where the registry lives."""

    url: str = ""
    """SQLAlchemy URL; empty means ``sqlite:///<workspace>/.llmops/registry.db``."""
    busy_timeout_s: float = Field(default=30.0, gt=0)
    """How long a writer waits for a locked database before failing."""


class StoreConfig(_Section):
    """``[store]``: where artifact bytes live."""

    url: str = ""
    """``file://`` path or ``s3://bucket/prefix``; empty means ``<workspace>/.llmops/store``."""
    compression: Literal["auto", "zstd", "none"] = "auto"
    """Chunk compression: ``auto`` is off on local disk (CPU-bound), on for S3 (network-bound)."""


class PromptsConfig(_Section):
    """``[prompts]``: prompt files and lookups."""

    dir: str = "prompts"
    """Folder of prompt files, relative to the workspace."""
    cache_ttl_s: float = Field(default=30.0, ge=0)
    """How long ``get()`` reuses a lookup; 0 turns the cache off."""


class RegistryConfig(_Section):
    """``[registry]``: the model registry."""

    policies_dir: str = "policies"
    """Folder of promotion policies (``<model name>.yaml``), relative to the workspace."""


class WebhookConfig(_Section):
    """``[[events.webhooks]]``: a receiver of registry events."""

    url: str
    """Where events are POSTed (JSON)."""
    name: str = ""
    """Shown in ``llmops models events``; default: the URL's host and path."""
    events: list[str] = Field(default_factory=lambda: ["*"])
    """Event types to send (``model.promoted`` ...), or ``*`` for all."""
    secret_env: str | None = None
    """Environment variable holding the HMAC secret (``X-LLMOps-Signature: sha256=...``)."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"webhook url {value[:80]!r} must start with http:// or https://")
        if "@" in value.split("/", 3)[2]:
            raise ValueError(
                "webhook url has credentials in it: sign deliveries with secret_env instead"
            )
        return value


class EventsConfig(_Section):
    """``[events]``: where registry events go."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)

    @field_validator("webhooks")
    @classmethod
    def _distinct(cls, value: list[WebhookConfig]) -> list[WebhookConfig]:
        from llmops.registry.events import webhook_name

        names = [webhook_name(h) for h in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"two webhooks are both named {twice[0]!r} (deliveries are kept per name):"
                " give each its own name ="
            )
        return value


class WorkspaceConfig(_Section):
    """The content of ``llmops.toml``."""

    name: str = "llmops"
    """A name for the workspace, shown in the CLI and dashboard."""
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    """Registry database settings."""
    store: StoreConfig = Field(default_factory=StoreConfig)
    """Artifact store settings."""
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    """Prompt settings."""
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """Model registry settings."""
    events: EventsConfig = Field(default_factory=EventsConfig)
    """Registry event webhooks."""


_TEMPLATE = """\
# llmops workspace. Environment overrides: LLMOPS_DB_URL, LLMOPS_STORE_URL.
name = "{name}"

[database]
# Empty: SQLite at .llmops/registry.db. For a team: "postgresql+psycopg://user@host/llmops".
url = ""
busy_timeout_s = 30

[store]
# Empty: .llmops/store on local disk. At scale: "s3://bucket/prefix".
url = ""
# auto: off on local disk (CPU-bound), zstd for S3 (network-bound); or "zstd" / "none".
compression = "auto"

[prompts]
dir = "prompts"
cache_ttl_s = 30
"""


def _load_config(path: Path) -> WorkspaceConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}", hint="fix the TOML syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8", hint="save it as UTF-8") from None
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{path}: {where}: {err['msg']}",
            hint=f"see the fields documented in {CONFIG_FILE} written by `llmops init`",
        ) from None


def _find_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def _examples_root() -> Path:
    """The example content: inside the wheel, or at the top of a source checkout."""
    packaged = Path(str(resources.files("llmops"))) / "_examples"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent


def default_actor() -> str:
    """Who is acting: ``LLMOPS_USER``, else the login name."""
    user = os.environ.get("LLMOPS_USER")
    if user:
        if len(user) > 256 or not user.isprintable() or user != user.strip():
            raise ConfigError(
                f"LLMOPS_USER {user[:40]!r} is not a user name (control characters, spaces"
                " around it, or over 256 characters)",
                hint="set LLMOPS_USER to the name approvals and the audit log should record",
            )
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Workspace:
    """An llmops workspace: configuration, registry database and content folders.

    Open one with :meth:`open` (resolves like the CLI) or create one with :meth:`init`; the
    database is migrated on first use.

    Example:
        >>> ws = Workspace.open()                                     # doctest: +SKIP
        >>> ws.prompts.get("summarize", label="production").render(text="...")  # doctest: +SKIP
    """

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config
        self.actor = default_actor()
        self._create_db = False
        """Only ``init`` creates a registry; opening one that is not there is an error."""

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, db={self.db_url_display!r})"

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """Open the workspace at ``path``, ``$LLMOPS_WORKSPACE``, or the nearest one upward.

        Raises:
            WorkspaceNotFoundError: No ``llmops.toml`` was found.
            ConfigError: It exists but is invalid.
        """
        if path is None and os.environ.get("LLMOPS_WORKSPACE"):
            path = os.environ["LLMOPS_WORKSPACE"]
        if path is not None:
            root = Path(path).resolve()
            if not (root / CONFIG_FILE).is_file():
                raise WorkspaceNotFoundError(
                    f"no {CONFIG_FILE} in {root}",
                    hint=f"create one with `llmops init {path}`",
                )
        else:
            found = _find_root(Path.cwd().resolve())
            if found is None:
                raise WorkspaceNotFoundError(
                    f"no {CONFIG_FILE} in {Path.cwd()} or any folder above it",
                    hint="run `llmops init` here, or pass --workspace DIR / set LLMOPS_WORKSPACE",
                )
            root = found
        return cls(root, _load_config(root / CONFIG_FILE))

    @classmethod
    def init(
        cls, path: str | os.PathLike[str] = ".", *, name: str | None = None, examples: bool = True
    ) -> Workspace:
        """Create a workspace at ``path`` (if none is there yet) with the example content.

        Existing files are never overwritten. Returns the opened workspace.
        """
        root = Path(path).resolve()
        if root.exists() and not root.is_dir():
            raise InputError(f"{root} exists and is not a directory", hint="choose another path")
        root.mkdir(parents=True, exist_ok=True)
        config = root / CONFIG_FILE
        if not config.exists():
            ws_name = (name or root.name or "llmops").replace('"', "")
            config.write_text(_TEMPLATE.format(name=ws_name), encoding="utf-8")
        if examples:
            source = _examples_root()
            for folder in _EXAMPLE_DIRS:
                src = source / folder
                if not src.is_dir():
                    continue
                for file in src.rglob("*"):
                    dest = root / folder / file.relative_to(src)
                    if file.is_file() and not dest.exists():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(file, dest)
            for example in _EXAMPLE_FILES:
                if (source / example).is_file() and not (root / example).exists():
                    shutil.copyfile(source / example, root / example)
        gitignore = root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text(f"{_STATE_DIR}/\n", encoding="utf-8")
        ws = cls.open(root)
        ws._create_db = True
        ws.db  # noqa: B018 - create and migrate the registry now, not on first use
        return ws

    # -- parts -----------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """``<root>/.llmops``: the default home of the database and store."""
        return self.root / _STATE_DIR

    @property
    def db_url(self) -> str:
        """The effective database URL (``LLMOPS_DB_URL`` wins over ``llmops.toml``)."""
        url = os.environ.get("LLMOPS_DB_URL") or self.config.database.url
        return url or f"sqlite:///{self.state_dir / 'registry.db'}"

    @property
    def db_url_display(self) -> str:
        """The database URL with any password hidden."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.db_url).render_as_string(hide_password=True)
        except Exception:
            return "<unparseable database URL>"

    @property
    def prompts_dir(self) -> Path:
        """Folder of prompt files."""
        return self.root / self.config.prompts.dir

    @cached_property
    def db(self) -> Database:
        """The registry database, migrated to the newest schema on first access."""
        from llmops.db import Database

        return Database(
            self.db_url,
            busy_timeout_s=self.config.database.busy_timeout_s,
            create=self._create_db,
        )

    @property
    def store_url(self) -> str:
        """The effective artifact store URL (``LLMOPS_STORE_URL`` wins over ``llmops.toml``)."""
        return os.environ.get("LLMOPS_STORE_URL") or self.config.store.url

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """Versioned artifacts: ``push``, ``pull``, ``open_tensor``, ``ls``, ``verify``, ``gc``."""
        from llmops.artifacts import ArtifactStore, open_backend

        backend = open_backend(self.store_url, default_root=self.state_dir / "store")
        return ArtifactStore(
            self.db,
            backend,
            actor=self.actor,
            compression=self.config.store.compression,
            hash_cache=self.state_dir / "hashcache.db",
            alias_guard=lambda version, alias: self.models.guard(version, alias),  # noqa: PLW0108 - lazy: models needs artifacts
        )

    def lineage(self, ref: str) -> Lineage:
        """Everything ``ref`` (``name@version``, ``run-...``, ``eval-...``) came from and went
        to, as nodes and edges (see :mod:`llmops.registry.lineage`)."""
        from llmops.registry.lineage import lineage

        return lineage(self.models, self.train_runs, ref)

    @cached_property
    def models(self) -> ModelRegistry:
        """The model registry: ``list``, ``show``, ``promote``, ``approve``, ``rollback`` ..."""
        from llmops.registry import ModelRegistry

        return ModelRegistry(
            self.db, self.artifacts, self.eval_runs, actor=self.actor,
            policies_dir=self.resolve_path(self.config.registry.policies_dir),
        )  # fmt: skip

    @cached_property
    def serving(self) -> Serving:
        """Serving: ``start`` backends, ``traffic`` policies, API ``keys``, the ``gateway``."""
        from llmops.serve import Serving

        return Serving(self.models, actor=self.actor, artifact_dir=self.artifact_dir,
                       state_dir=self.state_dir, prompts=lambda: self.prompts,
                       resolver=lambda: self.resolver)  # fmt: skip

    @cached_property
    def resolver(self) -> ModelResolver:
        """Model references (local folders or artifacts) to files on disk, with one identity."""
        from llmops.artifacts.resolver import ModelResolver

        return ModelResolver(
            self.artifacts, root=self.root, cache_dir=self.state_dir / "cache" / "artifacts"
        )

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        """``path`` itself when absolute, else relative to the workspace root (how recipes and
        suites name local files)."""
        return self.resolver.resolve_path(path)

    def model_source(self, ref: str) -> ModelSource:
        """A local model folder (relative to the workspace) or else an artifact reference."""
        return self.resolver.source(ref)

    def model_dir(self, source: ModelSource) -> Path:
        """The files of a model source on local disk (an artifact is pulled once, cached)."""
        return self.resolver.local_dir(source)

    def artifact_dir(self, ref: str | ArtifactVersion) -> Path:
        """The files of an artifact version in the workspace cache (pulled once, atomically)."""
        return self.resolver.artifact_dir(ref)

    @cached_property
    def prompts(self) -> PromptRegistry:
        """Versioned prompts: ``get``, ``push``, ``label``, ``diff``, ``history``, ``list``."""
        from llmops.prompts import PromptRegistry

        return PromptRegistry(
            self.db,
            actor=self.actor,
            cache_ttl_s=self.config.prompts.cache_ttl_s,
            prompts_dir=self.prompts_dir,
            root=self.root,
        )

    @property
    def eval_cache(self) -> Path:
        """The response cache of eval runs (``.llmops/evalcache.db``)."""
        return self.state_dir / "evalcache.db"

    @cached_property
    def eval_runs(self) -> EvalRuns:
        """Eval runs: ``get``, ``list``, ``results``, ``compare``, ``gate``, ``export``."""
        from llmops.evals.results import EvalRuns

        return EvalRuns(self.db, actor=self.actor)

    @cached_property
    def reviews(self) -> Reviews:
        """Human review: items, labels, agreement, rankings, preference exports."""
        from llmops.evals.reviews import Reviews

        return Reviews(self.db, actor=self.actor)

    @cached_property
    def pipelines(self) -> Pipelines:
        """Pipeline runs: ``list``, ``get`` (with each step's key, outputs and status)."""
        from llmops.pipelines.records import Pipelines

        return Pipelines(self.db, actor=self.actor)

    def run_pipeline(
        self,
        pipeline: str | os.PathLike[str] = "pipeline.yaml",
        *,
        from_step: str | None = None,
        only: str | None = None,
        force: tuple[str, ...] = (),
        log: Any = None,
        engine: str = "local",
    ) -> PipelineRunRecord:
        """Run a pipeline file (relative paths from the workspace root), skipping the steps
        whose inputs did not change; see :func:`llmops.pipelines.run_pipeline`.

        Example:
            >>> ws.run_pipeline("pipeline.yaml").status  # doctest: +SKIP
            'completed'
        """
        from llmops.pipelines.runner import run_pipeline

        return run_pipeline(
            self, pipeline, from_step=from_step, only=only, force=force, log=log, engine=engine
        )

    @property
    def evals(self) -> EvalRuns:
        """The old name of :attr:`eval_runs` (kept for one release)."""
        return self.eval_runs

    def evaluate(
        self,
        suite: str | os.PathLike[str] | LoadedSuite,
        *,
        concurrency: int | None = None,
        no_cache: bool = False,
        filter: str | None = None,
        limit: int | None = None,
        repeat: int = 1,
        resume: str | None = None,
        live: bool | None = None,
    ) -> EvalOutcome:
        """Run an eval suite (or a promptfoo config); see :func:`llmops.evals.run_suite`.

        ``filter`` (a regular expression over case ids, descriptions and variables), ``limit``
        and ``repeat`` choose the cases; ``live`` shows progress (default: in a notebook).
        """
        from llmops._liveline import in_notebook
        from llmops.evals.runner import run_suite
        from llmops.evals.selection import CaseSelection
        from llmops.evals.suite import LoadedSuite

        return run_suite(
            suite if isinstance(suite, LoadedSuite) else local_path(suite, self.root),
            prompts=self.prompts, results=self.eval_runs,
            cache=self.eval_cache, models=self.resolver, concurrency=concurrency,
            no_cache=no_cache, selection=CaseSelection(filter, limit, repeat), resume=resume,
            live=in_notebook() if live is None else live,
        )  # fmt: skip

    @cached_property
    def train_runs(self) -> Runs:
        """Training runs: ``get``, ``list``, ``metrics``."""
        from llmops.train.runs import Runs

        return Runs(self.db, actor=self.actor)

    @property
    def runs(self) -> Runs:
        """The old name of :attr:`train_runs` (kept for one release)."""
        return self.train_runs

    def train(
        self,
        recipe: str | os.PathLike[str] | Recipe | None = None,
        *,
        overrides: dict[str, Any] | None = None,
        resume: str | None = None,
        live: bool | None = None,
    ) -> TrainResult:
        """Run a fine-tuning recipe (or resume run ``resume``); see :func:`llmops.train.train`.
        ``live`` shows progress (default: in a notebook).

        Example:
            >>> run = ws.train("recipes/sft-lora.yaml")  # doctest: +SKIP
        """
        from llmops._liveline import in_notebook
        from llmops.train.runner import train

        if isinstance(recipe, str | os.PathLike):
            recipe = local_path(recipe, self.root)
        return train(
            recipe, artifacts=self.artifacts, runs=self.train_runs, models=self.resolver,
            state_dir=self.state_dir, overrides=overrides, resume=resume,
            live=in_notebook() if live is None else live,
        )  # fmt: skip

    def close(self) -> None:
        """Release database connections."""
        if "db" in self.__dict__:
            self.db.dispose()
