"""The one backend interface: load a model file, describe its inputs and outputs, run it.

The runtime serves through it and `cofc profile` times through it, so a latency table measures
exactly what a device will run."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None where the axis is dynamic (the batch)
    dtype: np.dtype

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if dim is None else dim for dim in self.shape)


class Backend(ABC):
    """An engine that runs one exported graph on this device."""

    name: str  # "onnxruntime", "tensorrt"

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

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; `feeds` maps every input name to a contiguous array of its dtype."""

    def close(self) -> None:
        """Release device memory; the backend is unusable afterwards."""
