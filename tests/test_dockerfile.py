"""The pipeline image's Dockerfile, checked without a Docker engine: what it is built on, what it
copies, in which order, and that TFX's entry point stays."""
import ast
import fnmatch
import os
import re
import shlex
from typing import List, Tuple

import setuptools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _instructions() -> List[Tuple[str, str]]:
  """(INSTRUCTION, arguments) of each Dockerfile line, continuation lines joined."""
  with open(os.path.join(ROOT, 'Dockerfile')) as f:
    text = re.sub(r'\\\n', ' ', f.read())
  rows = []
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith('#'):
      keyword, _, arguments = line.partition(' ')
      rows.append((keyword.upper(), arguments.strip()))
  return rows


def _setup_keywords() -> dict:
  """setup.py's `py_modules` list and `find_packages(include=...)` patterns, read from its AST."""
  with open(os.path.join(ROOT, 'setup.py')) as f:
    tree = ast.parse(f.read())
  call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, 'attr', '') == 'setup')
  keywords = {k.arg: k.value for k in call.keywords}
  include = next(k.value for k in keywords['packages'].keywords if k.arg == 'include')
  return {'py_modules': ast.literal_eval(keywords['py_modules']),
          'include': ast.literal_eval(include)}


def _pinned(lock: str, package: str) -> str:
  with open(os.path.join(ROOT, lock)) as f:
    return next(line.split('==')[1].strip() for line in f if line.startswith(package + '=='))


def _copied(instructions) -> List[Tuple[int, str]]:
  """(instruction index, source) of every COPY source."""
  return [(i, source.rstrip('/')) for i, (keyword, arguments) in enumerate(instructions)
          if keyword == 'COPY' for source in shlex.split(arguments)[:-1]]


def test_built_on_the_image_of_the_pinned_tfx():
  froms = [arguments for keyword, arguments in _instructions() if keyword == 'FROM']
  assert froms == [f"gcr.io/tfx-oss-public/tfx:{_pinned('requirements.lock', 'tfx')}"]


def test_copies_the_lock_then_every_package_setup_py_installs():
  instructions = _instructions()
  copied = _copied(instructions)
  sources = [source for _, source in copied]
  keywords = _setup_keywords()
  packages = {p.split('.')[0] for p in setuptools.find_packages(ROOT, include=keywords['include'])}
  assert packages >= {'base', 'datasources', 'components', 'modules', 'pipeline'}
  for needed in ['requirements.lock', 'setup.py', *packages,
                 *(module + '.py' for module in keywords['py_modules'])]:
    assert needed in sources, needed
  runs = [(i, arguments) for i, (keyword, arguments) in enumerate(instructions) if keyword == 'RUN']
  lock_install = next(i for i, a in runs if '-r requirements.lock' in a)
  project_install = next(i for i, a in runs if re.search(r'pip install .*--no-deps \.$', a))
  index = dict((source, i) for i, source in copied)
  # The lock's layer comes before the code, so that a code change does not reinstall the tree ...
  assert index['requirements.lock'] < lock_install < min(index[p] for p in packages)
  # ... and the project is installed after all of its files are in.
  assert max(index[s] for s in sources) < project_install


def test_keeps_the_entry_point_of_tfx_s_image():
  keywords = {keyword for keyword, _ in _instructions()}
  assert not keywords & {'ENTRYPOINT', 'CMD'}


def test_dockerignore_keeps_what_the_image_copies_and_drops_local_state():
  with open(os.path.join(ROOT, '.dockerignore')) as f:
    patterns = [line.strip() for line in f if line.strip() and not line.startswith('#')]

  def ignored(path):
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.replace('**/', ''))
               or path.startswith(p + '/') for p in patterns)

  for _, source in _copied(_instructions()):
    assert not ignored(source), source
  for local in ('.venv', '.venv-tfx121', '.git', 'outputs', 'modules/__pycache__'):
    assert ignored(local), local
