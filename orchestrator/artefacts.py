"""Everything a pool directory holds besides ``pool.toml``, and the one place that knows where.

    my-pool/
      pool.toml
      profiles/profile.v<N>.json        skill profiles (skills.Profile)
      router/classifier.v<N>.json       skill classifier (router.ClassifierPayload)
      router/topics.v<N>.json           topics (router.TopicPayload)
      aggregator/choice.v<N>.json       aggregator selection (aggregators.AggregatorChoice)
      policies/<policy>.v<N>.json       a policy's calibrated thresholds (router.calibration.Calibration)
      active.json                       the versions the pool routes with (``ActiveVersions``)

``coe profile`` adds new versions; the pool keeps routing with the versions ``active.json``
names until they are activated (``coe profile --activate``, or ``coe activate`` to go back to
any earlier version). A pool without ``active.json`` routes with the newest of each.

Every artefact is one JSON file: versioned, written atomically, never overwritten (through
``common.artefacts``), validated when read, so a malformed one is one ConfigError line naming
the file and the field. Nothing is ever unpickled: a pickle file (``.joblib``, ``.pkl``) left in
a pool is never opened, only named in a warning when the pool is loaded. The packages keep the (de)serialisation of
their own objects; this module decides the names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aggregators import AggregatorChoice
from common.artefacts import read_model, replace_file, versions, write_new_version
from common.errors import BadInput, ConfigError, NotFound
from router import ClassifierPayload, RouterArtefacts, Scorer, SkillClassifier, TopicModel, TopicPayload
from router.calibration import Calibration
from skills import CachedEmbedder, Embedder, Profile, make_embedder

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class ActiveVersions(BaseModel):
    """The artefact versions a pool routes with; 0: none of that kind (None, in an older file: the newest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: int | None = Field(None, ge=0)
    classifier: int | None = Field(None, ge=0)
    topics: int | None = Field(None, ge=0)
    policies: dict[str, int] = Field(
        default_factory=dict,
        description="Policy -> its calibration version (0: uncalibrated); a policy not named routes with its newest.",
    )


class PoolArtefacts:
    """The artefacts of the pool in ``directory``: where each lies, and reading and writing it."""

    PROFILES = "profiles"
    ROUTER = "router"
    AGGREGATOR = "aggregator"
    POLICIES = "policies"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # -- layout -----------------------------------------------------------------------------------

    @property
    def profiles_dir(self) -> Path:
        return self.directory / self.PROFILES

    @property
    def router_dir(self) -> Path:
        return self.directory / self.ROUTER

    @property
    def aggregator_dir(self) -> Path:
        return self.directory / self.AGGREGATOR

    def profile_versions(self, name: str = "profile") -> dict[int, Path]:
        return versions(self.profiles_dir, name)

    def classifier_versions(self) -> dict[int, Path]:
        return versions(self.router_dir, "classifier")

    def topics_versions(self) -> dict[int, Path]:
        return versions(self.router_dir, "topics")

    @property
    def policies_dir(self) -> Path:
        return self.directory / self.POLICIES

    def calibration_versions(self, policy: str) -> dict[int, Path]:
        return versions(self.policies_dir, policy)

    def calibrated_policies(self) -> list[str]:
        """The policies with at least one stored calibration."""
        folder = self.policies_dir
        names = {p.name.split(".v")[0] for p in folder.glob("*.v*.json")} if folder.is_dir() else set()
        return sorted(n for n in names if self.calibration_versions(n))

    def choice_versions(self) -> dict[int, Path]:
        return versions(self.aggregator_dir, "choice")

    def pickles(self) -> list[Path]:
        """Pickle files lying in the pool's artefact folders: never read, listed so that loading
        the pool can warn about them."""
        folders = (self.directory, self.profiles_dir, self.router_dir, self.aggregator_dir, self.policies_dir)
        return sorted(
            p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES
        )

    # -- which versions route ----------------------------------------------------------------------

    @property
    def active_file(self) -> Path:
        return self.directory / "active.json"

    def active(self) -> ActiveVersions | None:
        """The pinned versions; None when the pool never pinned any (the newest route)."""
        return read_model(self.active_file, ActiveVersions) if self.active_file.is_file() else None

    def activate(self, *, policies: dict[str, int] | None = None, **chosen: int | None) -> ActiveVersions:
        """Pin versions (``profile=``, ``classifier=``, ``topics=``; ``policies``: policy -> its
        calibration version, 0 for none); each must exist. Others stay."""
        for policy, pin in (policies or {}).items():
            calibrated = self.calibration_versions(policy)
            if pin and pin not in calibrated:
                have = ", ".join(f"v{v}" for v in sorted(calibrated)) or "none"
                raise NotFound(f"pool {self.directory.name} has no calibration v{pin} of {policy} (it has: {have})")
        stored = {
            "profile": self.profile_versions(),
            "classifier": self.classifier_versions(),
            "topics": self.topics_versions(),
        }
        for kind, version in chosen.items():
            if kind not in stored:
                raise BadInput(f"no artefact kind {kind!r}; known: {', '.join(stored)}")
            if version and version not in stored[kind]:
                have = ", ".join(f"v{v}" for v in sorted(stored[kind])) or "none"
                raise NotFound(f"pool {self.directory} has no {kind} v{version} (it has: {have})")
        # every kind is pinned to a concrete version (0: none yet), so a later one never routes unasked
        newest = {kind: max(found, default=0) for kind, found in stored.items()}
        current = self.active() or ActiveVersions(**newest)
        unset = {k: newest[k] for k, v in current.model_dump().items() if v is None}
        pinned = current.model_copy(
            update={
                **unset,
                **{k: v for k, v in chosen.items() if v is not None},
                "policies": {**current.policies, **(policies or {})},
            }
        )
        replace_file(self.active_file, pinned.model_dump_json(indent=2) + "\n")
        log.info("pool %s now routes with %s", self.directory, pinned.model_dump())
        return pinned

    def _latest(self, found: dict[int, Path], model: type[M], kind: str | None = None) -> M | None:
        """The active version of ``kind`` when one is pinned, else the newest."""
        if not found:
            return None
        active = self.active() if kind is not None else None
        version = getattr(active, kind) if active is not None and kind is not None else None
        if version is None:
            return read_model(found[max(found)], model)
        if version == 0:  # pinned to none of this kind
            return None
        if version not in found:
            raise ConfigError(f"{self.active_file}: {kind}: version {version} does not exist")
        return read_model(found[version], model)

    # -- profiles ---------------------------------------------------------------------------------

    def save_profile(self, profile: Profile) -> Path:
        """Write ``profile`` as the next version of its name; returns the new file."""
        return write_new_version(self.profiles_dir, profile.name, profile.model_dump_json(indent=1))

    def latest_profile(self, name: str = "profile") -> Profile | None:
        """The newest stored profile called ``name``; None when there is none."""
        return self._latest(self.profile_versions(name), Profile, "profile" if name == "profile" else None)

    # -- router -----------------------------------------------------------------------------------

    def save_classifier(self, classifier: SkillClassifier) -> Path:
        return write_new_version(self.router_dir, "classifier", classifier.to_payload().model_dump_json())

    def save_topics(self, topics: TopicModel) -> Path:
        return write_new_version(self.router_dir, "topics", topics.to_payload().model_dump_json())

    def save_router(self, artefacts: RouterArtefacts) -> list[Path]:
        """The classifier and, when trained, the topics; returns the new files."""
        paths = [self.save_classifier(artefacts.classifier)]
        if artefacts.topics is not None:
            paths.append(self.save_topics(artefacts.topics))
        return paths

    def latest_classifier(self) -> SkillClassifier | None:
        payload = self._latest(self.classifier_versions(), ClassifierPayload, "classifier")
        return SkillClassifier.from_payload(payload) if payload is not None else None

    def latest_topics(self) -> TopicModel | None:
        payload = self._latest(self.topics_versions(), TopicPayload, "topics")
        return TopicModel.from_payload(payload) if payload is not None else None

    def latest_router(
        self,
        embedder: Embedder | None = None,
        *,
        embeddings_dir: Path | None = None,
        encoders_dir: Path | None = None,
    ) -> RouterArtefacts | None:
        """The newest classifier and topics with the embedder they were trained on (made by name
        when not given, an exported encoder kept in ``encoders_dir``); None when no classifier was
        trained. With ``embeddings_dir``, the embedder keeps its vectors there (``skills.CachedEmbedder``)."""
        classifier = self.latest_classifier()
        if classifier is None:
            return None
        embedder = embedder or make_embedder(classifier.meta.embedder, cache_dir=encoders_dir)
        if embeddings_dir is not None and not isinstance(embedder, CachedEmbedder):
            embedder = CachedEmbedder(embedder, embeddings_dir)
        return RouterArtefacts.of(classifier, self.latest_topics(), embedder)

    def latest_scorer(
        self,
        embedder: Embedder | None = None,
        topic_share: float | None = None,
        *,
        embeddings_dir: Path | None = None,
        encoders_dir: Path | None = None,
    ) -> Scorer | None:
        """The newest classifier (and topics) as one scorer; None when no classifier was trained.
        ``embeddings_dir``: where its embedder's vectors are cached (None: nowhere); ``encoders_dir``:
        where an exported encoder is kept (None: ``skills.make_embedder``'s default)."""
        artefacts = self.latest_router(embedder, embeddings_dir=embeddings_dir, encoders_dir=encoders_dir)
        if artefacts is None:
            return None
        return artefacts.scorer() if topic_share is None else artefacts.scorer(topic_share)

    # -- aggregator selection ---------------------------------------------------------------------

    def save_choice(self, choice: AggregatorChoice) -> Path:
        """Write the selection as the next version; its ``revision`` is that version number."""
        path = write_new_version(
            self.aggregator_dir,
            "choice",
            lambda version: choice.model_copy(update={"revision": version}).model_dump_json(indent=2),
        )
        log.info("aggregator selection saved to %s (best %s)", path, choice.best)
        return path

    def latest_choice(self) -> AggregatorChoice | None:
        return self._latest(self.choice_versions(), AggregatorChoice)

    # -- calibrated policies ----------------------------------------------------------------------

    def save_calibration(self, calibration: Calibration) -> Path:
        """Write a policy's calibration as its next version; its ``revision`` is that version."""
        path = write_new_version(
            self.policies_dir,
            calibration.policy,
            lambda version: calibration.model_copy(update={"revision": version}).model_dump_json(indent=1),
        )
        log.info("calibration of %s saved to %s (%s)", calibration.policy, path, calibration.selection)
        return path

    def latest_calibration(self, policy: str) -> Calibration | None:
        """The calibration of ``policy`` the pool routes with: the version ``active.json`` pins
        (0: none), else the newest; None when it was never calibrated."""
        found = self.calibration_versions(policy)
        active = self.active()
        version = active.policies.get(policy) if active is not None else None
        if not found or version == 0:
            return None
        if version is None:
            version = max(found)
        if version not in found:
            raise ConfigError(f"{self.active_file}: policies: {policy} v{version} does not exist")
        calibration = read_model(found[version], Calibration)
        if calibration.policy != policy:
            raise ConfigError(f"{found[version]}: policy: {calibration.policy!r}, but the file is {policy!r}'s")
        return calibration

    def add_calibration(self, calibration: Calibration, *, activate: bool = False) -> Path:
        """Store a calibration as its policy's next version; the pool routes with it only when
        ``activate`` (else it keeps the calibration it routed with, pinned now if it was not)."""
        policy = calibration.policy
        active = self.active()
        routed = active.policies.get(policy) if active is not None else None
        if routed is None:
            routed = max(self.calibration_versions(policy), default=0)
        path = self.save_calibration(calibration)
        new = max(self.calibration_versions(policy))
        self.activate(policies={policy: new if activate else routed})
        return path
