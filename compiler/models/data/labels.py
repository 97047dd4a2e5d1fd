"""Label names in a user's files -> the teacher's class indices (the rule is `Expects`' docstring)."""

from __future__ import annotations

from collections.abc import Collection

from cofc.compiler.models.data.expects import Expects


class UnknownLabel(ValueError):
    """A label the teacher has no class for; the caller says where it was found."""

    def __init__(self, label: str, why: str):
        super().__init__(f"label {label!r} {why}")
        self.label = label


def label_map(expects: Expects, labels: Collection[str]) -> tuple[dict[str, int], tuple[str, ...]]:
    """Each label's class index, and the data set's class names (one per teacher class)."""
    classes, n = expects.classes, len(expects.classes)
    if expects.named:
        index = {c: i for i, c in enumerate(classes)}
        for label in sorted(labels):
            if label not in index:
                shown = ", ".join(classes[:8]) + (", ..." if n > 8 else "")
                raise UnknownLabel(label, f"is not one of the teacher's classes ({shown})")
        return {label: index[label] for label in labels}, classes
    if all(label.isdigit() for label in labels):
        for label in sorted(labels, key=int):
            if int(label) >= n:
                raise UnknownLabel(label, f"is outside the teacher's {n} classes (0..{n - 1})")
        return {label: int(label) for label in labels}, tuple(str(i) for i in range(n))
    ordered = sorted(labels)
    if len(ordered) > n:
        raise UnknownLabel(ordered[n], f"is one of {len(ordered)} labels; the teacher has {n} classes")
    return {label: i for i, label in enumerate(ordered)}, (*ordered, *(str(i) for i in range(len(ordered), n)))
