"""The one backend interface: load a model file, describe its inputs and outputs, run it, close it.

The runtime serves through it and `cofc profile` times through it, so a latency table measures
exactly what a device will run. Like Polygraphy's runners, a backend holds device resources
(sessions, engines, GPU buffers) from load to `close()`: use it as a context manager, so that
they are released on every path, and a closed backend refuses to run instead of touching freed
memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cofc.errors import CofcError
from cofc.runtime._closing import Closing


class BackendClosedError(CofcError):
    """`run` on a backend after `close()`."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None where the axis is dynamic (the batch)
    dtype: np.dtype

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if dim is None else dim for dim in self.shape)


class Backend(Closing, ABC):
    """An engine that runs one exported graph on this device."""

    name: str  # "onnxruntime", "tensorrt"

    def __init__(self, model_path: str | Path):
        self.model_path = Path(model_path)
        self._closed = False

    @property
    @abstractmethod
    def version(self) -> str:
        """The library version, recorded with every latency table and engine."""

    _inputs: list[TensorSpec]  # set by the backend when it loads the model
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; `feeds` maps every input name to a contiguous array of its dtype."""
        if self._closed:
            raise BackendClosedError(f"the {self.name} backend of {self.model_path} is closed; open it again to run")
        return self._infer(feeds)

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` on an open backend."""

    def close(self) -> None:
        """Release what the backend holds; it refuses to run afterwards. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._release()

    @abstractmethod
    def _release(self) -> None:
        """Free the session, engine and buffers (called once, by `close`)."""
