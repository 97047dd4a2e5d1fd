"""What a teacher takes, as the data loaders need to know it (torch-free, so that the runtime side
and `cofc bench` can build it from a bundle manifest as well as from a loaded teacher)."""

from __future__ import annotations

from dataclasses import dataclass

from cofc.errors import CofcError
from cofc.runtime.images import ImageInput
from cofc.runtime.manifest import ImagePreprocess, Manifest


@dataclass(frozen=True)
class Expects:
    """A teacher's inputs and classes. Labels in a user's files map onto `classes` by name when the
    names mean something (`named`); a head without names (0, 1, ... or LABEL_0, LABEL_1, ...)
    takes integer labels as class indices, and other labels in sorted order, as torchvision's
    ImageFolder numbers its class folders."""

    kind: str  # "image" or "text"
    classes: tuple[str, ...]
    image: ImageInput | None = None  # for kind "image"

    @property
    def named(self) -> bool:
        generic = ({str(i) for i in range(len(self.classes))}, {f"LABEL_{i}" for i in range(len(self.classes))})
        return set(self.classes) not in generic

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> Expects:
        """What a built deployment takes, read from its central bundle's manifest (no teacher to load)."""
        if manifest.fusion is None:
            raise CofcError(
                f"the bundle of {manifest.device.name!r} is a worker's; read the central bundle for its classes"
            )
        prep = manifest.preprocess
        return cls(prep.kind, manifest.fusion.classes, prep.image if isinstance(prep, ImagePreprocess) else None)
