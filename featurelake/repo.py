"""Loads a feature repository: imports every module of a folder and collects its definitions."""
from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from featurelake.definitions import DeltaSource, Entity, FeatureGroup, FeatureService, Source
from featurelake.errors import DefinitionError, NotFoundError, did_you_mean
from featurelake.ondemand import OnDemandFeature
from featurelake.services import check_services


@dataclass
class Repository:
    path: str
    entities: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    on_demand: dict = field(default_factory=dict)

    def group(self, name: str) -> FeatureGroup:
        if name not in self.groups:
            raise NotFoundError(f"unknown feature group {name!r} in repository {self.path}"
                                f"{did_you_mean(name, self.groups)}")
        return self.groups[name]

    def ordered(self, names: list[str] | None = None) -> list[FeatureGroup]:
        """Groups in dependency order: a group reading another group's table comes after it."""
        wanted = [self.group(n) for n in (names or sorted(self.groups))]
        done: list[FeatureGroup] = []

        def visit(g: FeatureGroup, path: tuple) -> None:
            if g in done:
                return
            if g.name in path:
                cycle = " -> ".join(path + (g.name,))
                raise DefinitionError(f"feature groups depend on each other in a cycle: {cycle}")
            for up in g.upstream_groups:
                if up in self.groups and (names is None or up in names):
                    visit(self.groups[up], path + (g.name,))
            done.append(g)

        for g in wanted:
            visit(g, ())
        return done

    def expectations_path(self, group: FeatureGroup) -> Path | None:
        if not group.expectations:
            default = Path(self.path, "expectations", f"{group.name}.yml")
            return default if default.is_file() else None
        path = Path(self.path, group.expectations)
        if not path.is_file():
            raise DefinitionError(f"feature group {group.name!r}: expectations file {str(path)!r} not found")
        return path


_LOADING = threading.Lock()  # sys.path and sys.modules are the process's: one load at a time


def load_repository(path: Union[str, Path] = "features") -> Repository:
    """Imports every .py module under path (not starting with '_'), collecting Entity, Source,
    FeatureGroup, FeatureService and OnDemandFeature objects from module globals. The folder is put
    on sys.path so modules can import each other by name."""
    with _LOADING:
        return _load(Path(path))


def _load(root: Path) -> Repository:
    if not root.is_dir():
        raise DefinitionError(f"feature repository {str(root)!r} not found: pass --repo PATH (a folder of "
                              f"definition modules)")
    repo = Repository(path=str(root))
    origin: dict[tuple, str] = {}
    files = [f for f in sorted(root.rglob("*.py"))
             if not any(part.startswith(("_", ".")) for part in f.relative_to(root).parts)]
    names = {f: ".".join(f.relative_to(root).with_suffix("").parts) for f in files}
    for module_name in names.values():  # load afresh: the code may have changed since
        sys.modules.pop(module_name, None)
    if str(root.resolve()) in sys.path:
        sys.path.remove(str(root.resolve()))
    sys.path.insert(0, str(root.resolve()))
    for file, module_name in names.items():
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, file.resolve())
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except DefinitionError as exc:
                del sys.modules[module_name]
                raise DefinitionError(f"{file}: {exc}") from None
        for value in vars(module).values():
            for kind, registry in ((Entity, repo.entities), (Source, repo.sources), (FeatureGroup, repo.groups),
                                   (FeatureService, repo.services), (OnDemandFeature, repo.on_demand)):
                if isinstance(value, kind):
                    _add(registry, value, kind.__name__, str(file), origin)
    for group in repo.groups.values():
        _add(repo.entities, group.entity, "Entity", "(group " + group.name + ")", origin)
        _add(repo.sources, group.source, "Source", "(group " + group.name + ")", origin)
        src = group.source
        if isinstance(src, DeltaSource) and src.group and src.group not in repo.groups:
            raise DefinitionError(f"feature group {group.name!r} reads group {src.group!r}, which is not defined"
                                  f"{did_you_mean(src.group, repo.groups)}")
    repo.ordered()
    check_services(repo)
    for feature in repo.on_demand.values():
        if feature.name in repo.groups:
            raise DefinitionError(f"on-demand feature {feature.name!r} has the name of a feature group: references "
                                  f"'{feature.name}:...' would be ambiguous; rename one of them")
        feature.check_inputs(repo.groups)
    return repo


def _add(registry: dict, obj: object, kind: str, where: str, origin: dict) -> None:
    name = obj.name  # type: ignore[attr-defined]
    existing = registry.get(name)
    if existing is None:
        registry[name] = obj
        origin[(kind, name)] = where
    elif existing is not obj:
        raise DefinitionError(f"duplicate {kind} name {name!r}: defined in {origin[(kind, name)]} and in {where}; "
                              f"rename one of them")
