"""Class names a deployment speaks: the class of a request that names none, and aliases for the three."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gpuwatch.policy.admission import UnknownPriorityError, parse_priority
from gpuwatch.policy.decision import PriorityClass


class ClassNamesError(ValueError):
    """A default class or alias that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class ClassNames:
    """How request class names map to the three classes (DESIGN §2), e.g. `free` -> sheddable."""

    default: PriorityClass = PriorityClass.DEFAULT
    aliases: Mapping[str, PriorityClass] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, default: str, aliases: Mapping[str, str]) -> ClassNames:
        """From configured text; ClassNamesError names a bad class, or an alias hiding a class name."""
        try:
            chosen = parse_priority(default)
        except UnknownPriorityError as exc:
            raise ClassNamesError(f"default: {exc}") from None
        mapped: dict[str, PriorityClass] = {}
        for alias, target in aliases.items():
            name = alias.strip().lower()
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ClassNamesError(f"alias {alias!r}: use letters, digits, - and _")
            if name in {cls_.value for cls_ in PriorityClass}:
                raise ClassNamesError(f"alias {alias!r}: already the name of a class")
            try:
                mapped[name] = parse_priority(target)
            except UnknownPriorityError as exc:
                raise ClassNamesError(f"alias {alias!r}: {exc}") from None
        return cls(chosen, MappingProxyType(mapped))

    def resolve(self, name: str) -> PriorityClass:
        """The class `name` (any case) stands for; UnknownPriorityError lists every valid name."""
        key = name.strip().lower()
        found = self.aliases.get(key)
        if found is not None:
            return found
        try:
            return parse_priority(key)
        except UnknownPriorityError:
            valid = ", ".join([*(c.value for c in PriorityClass), *self.aliases])
            raise UnknownPriorityError(f"unknown priority class {name!r}; valid classes: {valid}") from None
