"""The context-manager half of everything in the runtime that holds resources (backends, central,
workers, the local pipeline, clients): `with x:` calls `x.close()` on every way out of the body."""

from __future__ import annotations

from typing import Any, Self


class Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
