"""Map the design-card folders (edge/, servers/, shared/) onto the ``splitface`` namespace."""

from pathlib import Path

from setuptools import setup

ROOTS = {"edge": "splitface.edge", "servers": "splitface.servers", "shared": "splitface.shared"}


def _packages() -> tuple[list[str], dict[str, str]]:
    here = Path(__file__).parent
    packages, package_dir = [], {}
    for folder, dotted in ROOTS.items():
        for init in sorted((here / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(here / folder)
            name = ".".join([dotted, *rel.parts]) if rel.parts else dotted
            packages.append(name)
            package_dir[name] = str(init.parent.relative_to(here))
    return packages, package_dir


_pkgs, _dirs = _packages()
setup(packages=_pkgs, package_dir=_dirs)
