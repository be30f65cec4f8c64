"""A mixin for objects that own a resource and release it in ``close()``."""

from __future__ import annotations

from typing import Self


class Closing:
    """``with obj:`` returns the object and calls its ``close()`` on the way out, whatever
    happened inside; one definition instead of a copy in every resource-owning class."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
