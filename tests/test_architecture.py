"""The layers point one way (README.md, "Architecture"): a module imports only its own package and
the layers below it. Every import counts, including those inside functions."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Package (or top-level module) -> the project's packages it may import besides itself.
ALLOWED = {
    'base': set(),
    'datasources': {'base'},
    'components': {'base', 'datasources'},
    'modules': {'base', 'datasources'},
    'pipeline': {'base', 'datasources', 'components', 'modules'},
    'local_runner': {'base', 'pipeline'},
    'kubeflow_runner': {'base', 'pipeline'},
}
PROJECT = set(ALLOWED)


def _python_files(package: str):
  path = os.path.join(ROOT, package)
  if os.path.isfile(path + '.py'):
    yield path + '.py'
    return
  for folder, _, files in os.walk(path):
    yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith('.py'))


def project_imports(path: str):
  """(line, top-level project package) of every absolute import in a file."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split('.')[0]
      if top in PROJECT:
        yield node.lineno, top


def violations(package: str):
  allowed = ALLOWED[package] | {package}
  for path in _python_files(package):
    for line, imported in project_imports(path):
      if imported not in allowed:
        yield f'{os.path.relpath(path, ROOT)}:{line} imports {imported}'


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_layers_point_one_way(package):
  assert list(_python_files(package)), f'{package} has no Python files'
  assert list(violations(package)) == []


def test_the_check_sees_a_violation(tmp_path):
  """The rule is not vacuous: an upward import in a file is found."""
  bad = tmp_path / 'bad.py'
  bad.write_text('import os\nfrom pipeline import cli\n\ndef f():\n  import modules.models\n')
  assert list(project_imports(str(bad))) == [(2, 'pipeline'), (5, 'modules')]


def test_every_package_has_a_layer():
  """A new top-level package must be placed in a layer before it can be imported."""
  packages = {name for name in os.listdir(ROOT)
              if os.path.isfile(os.path.join(ROOT, name, '__init__.py')) and name != 'tests'}
  assert packages <= PROJECT, f'packages without a layer: {sorted(packages - PROJECT)}'
