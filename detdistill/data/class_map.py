"""Map a teacher's classes onto the student's (subset, relabelled, many-to-one), for distillation and for scoring
a teacher on the student's dataset.

torch is imported only where a tensor is made: ``detdistill eval`` maps a teacher's classes without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..names import class_key
from .dataset import load_dataset

if TYPE_CHECKING:
    import torch

ClassRef = int | str
MappingSpec = Mapping[ClassRef, ClassRef | Sequence[ClassRef] | None]


@dataclass(frozen=True)
class ClassMap:
    """For each student class, the teacher classes that carry its score (empty: no teacher signal).

    The score of student class c is the maximum of the teacher's logits over its mapped classes
    (the max of the sigmoid probabilities, since sigmoid is monotone).
    """

    teacher_names: tuple[str, ...]
    student_names: tuple[str, ...]
    sources: tuple[tuple[int, ...], ...]  # per student class: teacher class ids

    @property
    def is_identity(self) -> bool:
        return len(self.teacher_names) == len(self.student_names) and all(
            s == (i,) for i, s in enumerate(self.sources)
        )

    @property
    def mapped(self) -> list[bool]:
        return [bool(s) for s in self.sources]

    def describe(self) -> str:
        rows = []
        for name, src in zip(self.student_names, self.sources):
            rows.append(f"{name} <- {', '.join(self.teacher_names[i] for i in src) or '(none: features only)'}")
        return "; ".join(rows)

    def map_logits(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """(B, nc_teacher, A) teacher logits -> (B, nc_student, A); unmapped classes get a very low logit."""
        if self.is_identity:
            return teacher_logits
        b, _, a = teacher_logits.shape
        out = teacher_logits.new_full((b, len(self.sources), a), -30.0)
        for c, src in enumerate(self.sources):
            if len(src) == 1:
                out[:, c] = teacher_logits[:, src[0]]
            elif src:
                out[:, c] = teacher_logits[:, list(src)].amax(dim=1)
        return out

    def class_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        import torch  # lazy: torch (only distillation builds the mask)

        return torch.tensor(self.mapped, dtype=torch.bool, device=device)


class ClassMapError(ValueError):
    """A student class cannot be related to the teacher's classes."""


@dataclass(frozen=True)
class _Roles:
    """How the class map's errors name its two sides: distillation (teacher -> student) or scoring a model of
    other classes on a dataset (model -> dataset)."""

    source: str  # the side whose classes are mapped from
    target: str  # the side each entry is keyed by
    target_data: str  # the target's classes, in an error
    empty: str  # what an empty entry does, and where else the map can be given


DISTILL = _Roles("teacher", "student", "the student's dataset", "to distil it through features only; in a pipeline "
                 "recipe: `distill.class_map: {{{0}: [<teacher class>]}}`")
SCORING = _Roles("model", "dataset", "the dataset", "to score it with no model class, at AP 0")


def _resolve(ref: ClassRef, names: Sequence[str], who: str) -> int:
    if isinstance(ref, bool):
        raise ClassMapError(f"class reference {ref!r} is not an id or a name")
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        i = int(ref)
        if not 0 <= i < len(names):
            raise ClassMapError(f"{who} class id {i} is out of range 0..{len(names) - 1}")
        return i
    lookup = {class_key(n): i for i, n in enumerate(names)}
    if class_key(ref) not in lookup:
        raise ClassMapError(f"{who} has no class named {ref!r}; its classes are: {', '.join(names)}")
    return lookup[class_key(ref)]


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and "," in value:
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, str) and not value.strip():
        return []
    return [value]


def build_class_map(
    teacher_names: Sequence[str], student_names: Sequence[str], spec: MappingSpec | str | None = None,
    roles: _Roles = DISTILL,
) -> ClassMap:
    """Relate student classes to teacher classes.

    Args:
        teacher_names: teacher class names in id order.
        student_names: student (dataset) class names in id order.
        spec: optional explicit mapping ``{student id or name: teacher id/name, list of them, or None}``, or
            the CLI's text form (:func:`parse_class_map_arg`).
            Classes it omits are matched by name. ``None``/empty maps a class to nothing (it is then
            distilled only through features and boxes).
        roles: how errors name the two sides (:data:`SCORING`: a model scored on a dataset).

    Raises:
        ClassMapError: a reference names no class, or a student class has no teacher class and no
            explicit entry, with the fix in the message.
    """
    teacher_names, student_names = tuple(map(str, teacher_names)), tuple(map(str, student_names))
    if isinstance(spec, str):  # the CLI form, 'Bus=bus;Ambulance=car,truck'
        spec = parse_class_map_arg(spec)
    if spec is not None and not isinstance(spec, Mapping):
        raise ClassMapError(f"a class map is a mapping {{student class: teacher class(es)}}, e.g. {{'Ambulance': "
                            f"['car', 'truck']}}, or the CLI's text 'Ambulance=car,truck;Bus=bus'; got "
                            f"{type(spec).__name__} {spec!r}")
    sources: list[tuple[int, ...] | None] = [None] * len(student_names)
    given: dict[int, object] = {}  # student id -> the key that mapped it (names match in any case, and ids count)
    for key, value in (spec or {}).items():
        c = _resolve(key, student_names, roles.target_data)
        if c in given:
            name = student_names[c]
            raise ClassMapError(f"the class map maps {roles.target} class {name!r} twice (as {given[c]!r} and {key!r}; "
                                f"names match in any case, ids count too): give each class once, with all of its "
                                f"{roles.source} classes together, e.g. '{name}=A,B' on the command line, "
                                f"{{{name!r}: ['A', 'B']}} in Python or a recipe")
        given[c] = key
        sources[c] = tuple(dict.fromkeys(_resolve(v, teacher_names, f"the {roles.source}") for v in _as_list(value)))

    if not spec and [class_key(n) for n in teacher_names] == [class_key(n) for n in student_names]:
        return ClassMap(teacher_names, student_names, tuple((i,) for i in range(len(student_names))))

    by_name = {class_key(n): i for i, n in enumerate(teacher_names)}
    missing = []
    for c, name in enumerate(student_names):
        if sources[c] is None:
            if class_key(name) in by_name:
                sources[c] = (by_name[class_key(name)],)
            else:
                missing.append(name)
    if missing:
        src, tgt = roles.source, roles.target
        raise ClassMapError(
            f"the {src}'s classes differ from the dataset's ({len(teacher_names)} vs {len(student_names)}), and "
            f"{tgt} class(es) {missing} match no {src} class by name. Map them explicitly, e.g. "
            f"--class-map '{missing[0]}=<{src} class>[,<another>]' (or '{missing[0]}=' "
            f"{roles.empty.format(missing[0])}), or add a `teacher_classes:` (or "
            f"`coco_classes:` for a COCO {src}) block to the data YAML mapping each {tgt} class id to {src} class "
            "ids" + (" (then --class-map auto)." if roles is SCORING else ".")
        )
    return ClassMap(teacher_names, student_names, tuple(s or () for s in sources))


def parse_class_map_arg(text: str, roles: _Roles = DISTILL) -> dict[str, list[str]]:
    """Parse the CLI form ``'Bus=bus;Ambulance=car,truck;3=motorcycle'`` into a mapping spec."""
    spec: dict[str, list[str]] = {}
    pair = f"'{roles.target}={roles.source}[,{roles.source}...]'"
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise ClassMapError(f"--class-map entry {part!r} must look like {pair}, e.g. 'Ambulance=car,truck'")
        key, value = part.split("=", 1)
        if key.strip() in spec:
            raise ClassMapError(f"--class-map maps {roles.target} class {key.strip()!r} twice; give each class once, "
                                f"its {roles.source} classes comma separated, e.g. 'Ambulance=car,truck'")
        spec[key.strip()] = _as_list(value.strip())
    if not spec:
        raise ClassMapError(f"--class-map {text!r} has no entry; write {pair} pairs separated by ';', or leave the "
                            "option out")
    return spec


def spec_from_data(data: Mapping, teacher_nc: int) -> MappingSpec | None:
    """A mapping stored in the dataset YAML: ``teacher_classes`` or, for an 80-class teacher, ``coco_classes``."""
    key = "teacher_classes" if "teacher_classes" in data else "coco_classes" if teacher_nc == 80 else None
    block = data.get(key) if key else None
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise ClassMapError(
            f"`{key}:` in the data YAML must map each student class id (or name) to teacher class ids or names, "
            f"e.g. `{key}: {{0: [2, 7], 1: 5}}`; got {type(block).__name__}"
        )
    return dict(block)


def dataset_class_names(data: Mapping) -> list[str]:
    """Class names of an ultralytics dataset dict (``names`` as a dict or a list), in id order."""
    names = data["names"]
    return [str(names[i]) for i in sorted(names)] if isinstance(names, Mapping) else [str(n) for n in names]


def resolve_class_map(teacher_names: Sequence[str], data: Mapping, spec: MappingSpec | str | None = None,
                      roles: _Roles = DISTILL) -> ClassMap:
    """The class map for a run: ``spec`` if given, else the data YAML's mapping block, else class names."""
    return build_class_map(teacher_names, dataset_class_names(data), spec or spec_from_data(data, len(teacher_names)),
                           roles)


def teacher_to_student(sources: Sequence[Sequence[int]], teacher_nc: int) -> dict[int, int]:
    """For each teacher class, the one student class its detections are labelled as.

    A teacher class listed by several student classes (``Ambulance <- car, truck`` beside ``Car <- car``)
    goes to the student class it is the only source of; if that is still ambiguous, it labels nothing.
    """
    out: dict[int, int] = {}
    for t in range(teacher_nc):
        users = [c for c, src in enumerate(sources) if t in src]
        sole = [c for c in users if tuple(sources[c]) == (t,)]
        pick = users if len(users) == 1 else sole
        if len(pick) == 1:
            out[t] = pick[0]
    return out


def describe_scoring(cm: ClassMap) -> str:
    """For each dataset class, the model classes whose detections are scored as it (:func:`teacher_to_student`)."""
    to_dataset = teacher_to_student(cm.sources, len(cm.teacher_names))
    rows = []
    for c, name in enumerate(cm.student_names):
        sources = [cm.teacher_names[t] for t, target in sorted(to_dataset.items()) if target == c]
        rows.append(f"{name} <- {', '.join(sources) or '(none: AP 0)'}")
    return "; ".join(rows)


def score_map(model_names: Sequence[str], data: str | Path, spec: MappingSpec | str | None = None
              ) -> tuple[dict[int, int] | None, ClassMap]:
    """How a model of other classes (a COCO teacher) is scored on the dataset of the YAML ``data``: its class ids ->
    the dataset's (None: the same classes), and the class map it follows (``spec``, else the YAML's
    ``teacher_classes``/``coco_classes`` block, else class names). A model class mapped to several dataset classes
    counts for the one it alone maps to, else for none (:func:`teacher_to_student`)."""
    dataset = load_dataset(data)
    cm = resolve_class_map(model_names, {"names": dataset.names, **dataset.class_blocks}, spec, SCORING)
    return (None if cm.is_identity else teacher_to_student(cm.sources, len(model_names))), cm
