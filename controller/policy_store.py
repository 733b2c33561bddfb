"""Learned-policy artifacts for the reconcile loop, loaded once per source and version.

A source is a folder in the controller's pod (``artifact.path``) or a
ConfigMap (``artifact.configMap``, in the autoscaler's namespace) holding
``policy.onnx`` (as binaryData) and ``metadata.json``. Every autoscaler
naming the same source shares one loaded artifact (one onnxruntime session).

:meth:`ArtifactStore.resolve` says which version a source has (a folder:
its files' sizes and modification times; a ConfigMap: its resourceVersion),
looking again at most every ``refresh_s`` seconds of the time passed in, and
loads a new version once. A failure (missing, corrupt, another observation
schema) is cached with its version too, so it is read once per version, not
once per autoscaler and tick; the loop then falls back to the baseline with
``PolicyLoaded=False`` and the loader's message. When the ConfigMap cannot
be read for a temporary reason, the version already loaded stays in use.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from controller.artifact import ArtifactError, PolicyArtifact, load_artifact
from controller.kube import KubeClient, KubeError, TargetMissing
from controller.spec import ArtifactRef

#: ("path", "", folder) or ("configMap", namespace, name).
Source = tuple[str, str, str]
FILES = ("metadata.json", "policy.onnx")


@dataclass(frozen=True)
class Loaded:
    """A source at one version: the artifact, or why there is none."""

    version: str
    artifact: PolicyArtifact | None
    error: str | None = None


def source_of(namespace: str, ref: ArtifactRef) -> Source:
    if ref.path is not None:
        return ("path", "", ref.path)
    return ("configMap", namespace, ref.config_map["name"])  # type: ignore[index]


def describe(source: Source) -> str:
    kind, namespace, name = source
    return name if kind == "path" else f"configmap {namespace}/{name}"


class ArtifactStore:
    """Loaded artifacts by source and version.

    :param kube: reads ConfigMaps.
    :param cache_dir: where ConfigMap contents are written for the loader (``/tmp`` is an emptyDir in the chart).
    :param refresh_s: how often a source's version is looked at again, seconds.
    """

    def __init__(self, kube: KubeClient, cache_dir: Path, refresh_s: float = 60.0) -> None:
        if refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0, got {refresh_s}")
        self.kube, self.cache_dir, self.refresh_s = kube, cache_dir, refresh_s
        self._loaded: dict[Source, Loaded] = {}
        self._checked: dict[Source, float] = {}
        self.loads = 0

    def resolve(self, source: Source, now_s: float) -> Loaded:
        """The source's artifact as of ``now_s`` (at most ``refresh_s`` old)."""
        known = self._loaded.get(source)
        if known is not None and now_s - self._checked[source] < self.refresh_s:
            return known
        self._checked[source] = now_s
        if source[0] == "path":
            loaded = self._from_folder(source, known)
        else:
            loaded = self._from_config_map(source, known)
        self._loaded[source] = loaded
        return loaded

    def forget_unused(self, in_use: set[Source]) -> None:
        """Drop artifacts no autoscaler names any more."""
        for source in [s for s in self._loaded if s not in in_use]:
            self._loaded.pop(source)
            self._checked.pop(source, None)
            if source[0] == "configMap":
                shutil.rmtree(self.cache_dir / source[1] / source[2], ignore_errors=True)

    # ------------------------------------------------------------- sources
    def _from_folder(self, source: Source, known: Loaded | None) -> Loaded:
        folder = Path(source[2])
        stats = []
        for name in FILES:
            try:
                st = (folder / name).stat()
                stats.append(f"{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                stats.append("missing")
        version = "/".join(stats)
        if known is not None and known.version == version:
            return known
        return self._load(folder, version, source)

    def _from_config_map(self, source: Source, known: Loaded | None) -> Loaded:
        _, namespace, name = source
        try:
            cm = self.kube.read_config_map(namespace, name)
        except TargetMissing:
            return Loaded("missing", None, f"policy artifact {describe(source)}: not found")
        except KubeError as exc:
            if known is not None and exc.temporary:
                return known  # keep what works through an API blip
            return Loaded("unreadable", None, f"policy artifact {describe(source)}: {exc}")
        if known is not None and known.version == cm.resource_version:
            return known
        folder = self.cache_dir / namespace / name / cm.resource_version
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, content in cm.files.items():
            if "/" in file_name or file_name.startswith("."):
                continue  # ConfigMap keys are flat names; refuse anything else
            (folder / file_name).write_bytes(content)
        loaded = self._load(folder, cm.resource_version, source)
        for old in folder.parent.iterdir():
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return loaded

    def _load(self, folder: Path, version: str, source: Source) -> Loaded:
        self.loads += 1
        try:
            return Loaded(version, load_artifact(folder))
        except (ArtifactError, OSError) as exc:
            message = str(exc) if source[0] == "path" else f"{exc} (from {describe(source)})"
            return Loaded(version, None, message)
