"""The two supported stacks, and the few places where their libraries differ (docs/stacks.md).

One code base runs on TFX 1.16 (Python 3.10: TensorFlow 2.16, Keras 3.6, TFMA 0.47, Beam 2.59,
numpy 1, protobuf 3.20) and on TFX 1.21 (Python 3.11-3.13: TensorFlow 2.21, Keras 3.15, TFMA 0.52,
Beam 2.77, numpy 2, protobuf 6). Every difference the code has to know about lives here as a shim
that works on both, so no other module compares versions.

Pure: imports only the libraries, and only inside the function that needs them (`base` stays cheap to
import and the stack facts readable without TensorFlow); nothing of the project.

`python3 -m base.compat choose [--stack S] [--python P]` is how `make` picks the stack: it needs only
the standard library, so any Python 3 runs it before either stack is installed.
"""
import argparse
import dataclasses
import functools
import glob
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class Stack:
  """One supported set of pinned libraries and what a machine needs to run it."""
  name: str
  tfx: str
  pythons: Tuple[Tuple[int, int], ...]  # the (major, minor) versions the stack's lock installs on
  min_glibc: Tuple[int, int]  # the newest manylinux tag among the stack's wheels
  lock: str  # the resolved tree, at the checkout's root
  venv: str  # each stack has its own, so switching never breaks the other
  macos_arch: str  # the one macOS processor its ml-metadata/tfx-bsl/TFDV wheels are built for


TFX116 = Stack(name='tfx116', tfx='1.16.0', pythons=((3, 10),), min_glibc=(2, 17),
               lock='requirements.lock', venv='.venv', macos_arch='x86_64')
# ml-metadata 1.21.0 and tensorflow-data-validation 1.21.0 ship only manylinux_2_39 wheels for Linux.
TFX121 = Stack(name='tfx121', tfx='1.21.0', pythons=((3, 11), (3, 12), (3, 13)), min_glibc=(2, 39),
               lock='requirements-tfx121.lock', venv='.venv-tfx121', macos_arch='arm64')
STACKS = (TFX121, TFX116)  # newest first: the order in which a machine is offered them


def stack_of_tfx(tfx_version: str) -> Stack:
  """The stack whose TFX has this version's major.minor (raises ValueError for an unsupported one)."""
  minor = tuple(tfx_version.split('.')[:2])
  for stack in STACKS:
    if tuple(stack.tfx.split('.')[:2]) == minor:
      return stack
  raise ValueError(f'TFX {tfx_version} is not a supported stack; supported: '
                   f"{', '.join(stack.tfx for stack in STACKS)}")


def installed_stack() -> Stack:
  """The stack of the installed TFX (from its package metadata: no TensorFlow import)."""
  return stack_of_tfx(importlib.metadata.version('tfx'))


def stack_for_machine(glibc: Tuple[int, int], python: Tuple[int, int]) -> Stack:
  """The newest stack a Linux machine with this glibc and Python can run.

  TFX 1.16 is the fallback: its wheels need only glibc 2.17, but it needs a Python 3.10.
  """
  for stack in STACKS:
    if why_not_on_machine(stack, glibc) is None and python in stack.pythons:
      return stack
  return TFX116


def _dotted(version: Tuple[int, ...]) -> str:
  return '.'.join(str(part) for part in version)


def pythons_text(stack: Stack) -> str:
  """'3.10' or '3.11-3.13'."""
  first, last = _dotted(stack.pythons[0]), _dotted(stack.pythons[-1])
  return first if first == last else f'{first}-{last}'


def why_not_on_machine(stack: Stack, glibc: Optional[Tuple[int, int]],
                       macos_arch: Optional[str] = None) -> Optional[str]:
  """None when the stack's wheels install on this machine (Linux: its glibc; macOS: its processor),
  else why not, in a few words."""
  if glibc is not None:
    if glibc < stack.min_glibc:
      return (f'glibc {_dotted(glibc)} < {_dotted(stack.min_glibc)} needed by '
              f"TFX {_dotted(tuple(int(p) for p in stack.tfx.split('.')[:2]))}'s ml-metadata wheels")
    return None
  if macos_arch is not None:
    if macos_arch != stack.macos_arch:
      return f'TFX {stack.tfx} has macOS wheels only for {stack.macos_arch}, not {macos_arch}'
    return None
  return "no glibc found: TFX's Linux wheels need glibc (not musl)"


def machine_text(glibc: Optional[Tuple[int, int]], macos_arch: Optional[str]) -> str:
  if glibc is not None:
    return f'glibc {_dotted(glibc)}'
  return f'macOS on {macos_arch}' if macos_arch else 'no glibc'


@dataclasses.dataclass(frozen=True)
class Choice:
  """The stack `make` uses, the Python its venv is made with ('' when none was found: `make
  install` then says how to get one) and why, as printed."""
  stack: Stack
  python: str
  reason: str


def choose(requested_stack: str, requested_python: str, glibc: Optional[Tuple[int, int]],
           macos_arch: Optional[str], pythons_of: Callable[[Stack], Sequence[str]],
           version_of: Callable[[str], Optional[Tuple[int, int]]]) -> Choice:
  """The stack for this machine: the newest whose wheels install here and for which a Python is
  found (`pythons_of` lists the candidates, `version_of` runs one: None when it does not run);
  STACK (`requested_stack`) and PYTHON (`requested_python`) override. Raises ValueError with the
  one-line reason when the request cannot work here."""
  by_name = {stack.name: stack for stack in STACKS}
  machine = machine_text(glibc, macos_arch)

  def checked_python(stack: Stack) -> Tuple[str, Tuple[int, int]]:
    version = version_of(requested_python)
    if version is None:
      raise ValueError(f'PYTHON={requested_python}: does not run')
    if version not in stack.pythons:
      raise ValueError(f'PYTHON={requested_python} is Python {_dotted(version)}; '
                       f'{stack.name} needs Python {pythons_text(stack)}')
    return requested_python, version

  def found(stack: Stack) -> Tuple[str, Optional[Tuple[int, int]]]:
    for command in pythons_of(stack):
      version = version_of(command)
      if version in stack.pythons:
        return command, version
    return '', None

  if requested_stack:
    if requested_stack not in by_name:
      raise ValueError(f"STACK={requested_stack}: must be one of {', '.join(sorted(by_name))}")
    stack = by_name[requested_stack]
    why_not = why_not_on_machine(stack, glibc, macos_arch)
    if why_not:
      hint = ' (on Linux, run it in a Debian 13 root: .ci/debian13.sh)' if glibc else ''
      raise ValueError(f'STACK={stack.name}: {why_not}{hint}')
    python, version = checked_python(stack) if requested_python else found(stack)
    where = (f'PYTHON given (Python {_dotted(version)})' if requested_python else
             f'Python {_dotted(version)} found' if version else
             f'but no Python {pythons_text(stack)} found')
    return Choice(stack, python, f'stack {stack.name}: STACK={stack.name} given, {machine}, {where}')
  if requested_python:
    version = version_of(requested_python)
    if version is None:
      raise ValueError(f'PYTHON={requested_python}: does not run')
    for stack in STACKS:
      if version in stack.pythons and not why_not_on_machine(stack, glibc, macos_arch):
        return Choice(stack, requested_python,
                      f'stack {stack.name}: {machine} and PYTHON given (Python {_dotted(version)})')
    raise ValueError(f'PYTHON={requested_python} is Python {_dotted(version)}: on {machine} no stack '
                     f"runs on it ({'; '.join(f'{s.name} needs Python {pythons_text(s)}' for s in STACKS)})")
  # Newest first; the reason is why the newer ones were passed over, or what made the newest fit.
  passed_over = []
  for stack in STACKS:
    why_not = why_not_on_machine(stack, glibc, macos_arch)
    python, version = ('', None) if why_not else found(stack)
    if python:
      reason = '; '.join(passed_over) or f'{machine} and Python {_dotted(version)} found'
      return Choice(stack, python, f'stack {stack.name}: {reason}')
    passed_over.append(why_not or f'{machine}, but no Python {pythons_text(stack)} found')
  return Choice(TFX116, '', f"stack {TFX116.name}: {'; '.join(passed_over)}")


def python_candidates(stack: Stack, home: str) -> List[str]:
  """Where `make` looks for a stack's Python: python3.X on PATH, newest X first, then pyenv's
  versions (~/.pyenv/versions/3.X.*), newest first."""
  names = [f'python{_dotted(version)}' for version in reversed(stack.pythons)]
  installed = [path for version in stack.pythons for path in glob.glob(os.path.join(
      home, '.pyenv', 'versions', f'{_dotted(version)}.*', 'bin', f'python{_dotted(version)}'))]

  def version_key(path: str) -> Tuple[int, ...]:
    release = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return tuple(int(part) if part.isdigit() else -1 for part in release.split('.'))

  return names + sorted(installed, key=version_key, reverse=True)


def python_version(command: str) -> Optional[Tuple[int, int]]:
  """(major, minor) of a Python command, None when it does not run (e.g. a pyenv shim of a version
  that is not installed)."""
  try:
    result = subprocess.run([command, '-c', 'import sys; print(*sys.version_info[:2])'],
                            capture_output=True, text=True, timeout=60, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  parts = result.stdout.split()
  if result.returncode != 0 or len(parts) != 2 or not all(p.isdigit() for p in parts):
    return None
  return int(parts[0]), int(parts[1])


def machine_glibc() -> Optional[Tuple[int, int]]:
  """This machine's glibc, from `getconf GNU_LIBC_VERSION` or else `ldd --version`; None without
  glibc (macOS, musl)."""
  for command in (['getconf', 'GNU_LIBC_VERSION'], ['ldd', '--version']):
    try:
      result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
      continue
    lines = result.stdout.splitlines()
    if result.returncode == 0 and lines and 'glibc' in lines[0].lower():
      return parse_glibc(lines[0])
  return None


def main(argv: Sequence[str]) -> int:
  """`choose`: prints 'NAME VENV LOCK PYTHON REASON...' (PYTHON '-' when none was found) for the
  Makefile, or 'error: ...' and exits 2."""
  parser = argparse.ArgumentParser(prog='python3 -m base.compat')
  parser.add_argument('command', choices=['choose'])
  parser.add_argument('--stack', default='', help='tfx116 or tfx121; empty: pick for this machine')
  parser.add_argument('--python', default='', help="the Python for the stack's venv")
  args = parser.parse_args(argv)
  macos_arch = platform.machine() if platform.system() == 'Darwin' else None
  try:
    choice = choose(args.stack.strip(), args.python.strip(), machine_glibc(), macos_arch,
                    lambda stack: python_candidates(stack, os.path.expanduser('~')), python_version)
  except ValueError as error:
    print(f'error: {error}')
    return 2
  stack = choice.stack
  print(f'{stack.name} {stack.venv} {stack.lock} {choice.python or "-"} {choice.reason}')
  return 0


def parse_glibc(text: str) -> Tuple[int, int]:
  """(major, minor) of `os.confstr('CS_GNU_LIBC_VERSION')` ('glibc 2.36') or `ldd --version`'s first
  line ('ldd (Debian GLIBC 2.36-9+deb12u14) 2.36'): the last word is the version."""
  major, minor = text.split()[-1].split('.')[:2]
  return int(major), int(minor)


def tfma_config():
  """TFMA's config protos (EvalConfig, ModelSpec, MetricThreshold, PerSliceMetricThreshold, ...).

  TFMA 0.47 re-exports them at `tfma.*`; TFMA 0.52 still lists them in `tfma.__all__` but no longer
  imports them (`tfma.PerSliceMetricThreshold` is an AttributeError). Their module is the same on
  both: `tensorflow_model_analysis.proto.config_pb2`.
  """
  from tensorflow_model_analysis.proto import config_pb2  # pylint: disable=g-import-not-at-top
  return config_pb2


def load_eval_run(output_path: str):
  """TFMA's EvalRun record of an evaluation output: `(eval_config, data_location, file_format,
  model_locations)`. TFMA 0.52 no longer imports `tfma.writers` at the top level; the module is
  the same on both."""
  from tensorflow_model_analysis.writers import eval_config_writer  # pylint: disable=g-import-not-at-top
  return eval_config_writer.load_eval_run(output_path)


def tfma_view():
  """TFMA's notebook renderers (`render_slicing_metrics`, ...): `tfma.view` on 0.47, not imported
  by `import tensorflow_model_analysis` on 0.52."""
  from tensorflow_model_analysis import view  # pylint: disable=g-import-not-at-top
  return view


_TFMA_METRICS_PROTO = 'tensorflow_model_analysis.proto.metrics_for_slice_pb2'


@functools.lru_cache(maxsize=None)
def tfma_metrics_proto():
  """TFMA's generated `metrics_for_slice_pb2` (MetricsForSlice, ...), without importing TFMA.

  The module needs only protobuf, but importing it by name first runs TFMA's __init__, which
  imports TensorFlow and Beam (~12 s): it is loaded from its file instead, and adds the same
  descriptors to protobuf's default pool, which accepts TFMA's own copy later. TFMA 0.47's module
  imports the well-known types it uses; TFMA 0.52's (a newer protoc) expects them in the pool
  already, so they are imported first (harmless on 0.47).
  """
  from google.protobuf import wrappers_pb2  # pylint: disable=g-import-not-at-top,unused-import
  if _TFMA_METRICS_PROTO in sys.modules:
    return sys.modules[_TFMA_METRICS_PROTO]
  package = importlib.util.find_spec('tensorflow_model_analysis')  # finds, does not import
  path = os.path.join(package.submodule_search_locations[0], 'proto', 'metrics_for_slice_pb2.py')
  spec = importlib.util.spec_from_file_location('_tfma_metrics_for_slice_pb2', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@functools.lru_cache(maxsize=None)
def _longer_key_first() -> bool:
  """Whether protobuf's deterministic serialization writes map key 'ab' before its prefix 'a'.

  protobuf 3.20's C++ implementation (TFX 1.16) sorts string map keys bytewise ('label' <
  'label_name'); protobuf 6's upb (TFX 1.21) writes a key before any key that is a prefix of it
  ('label_name', then 'label'). Asked of the installed protobuf once, not guessed from versions.
  """
  from google.protobuf import struct_pb2  # pylint: disable=g-import-not-at-top
  message = struct_pb2.Struct()
  message.fields['a'].number_value = 0
  message.fields['ab'].number_value = 0
  serialized = message.SerializeToString(deterministic=True)
  return serialized.index(b'ab') < serialized.index(b'\x01a')


def deterministic_map_order(keys: Iterable[str]) -> List[str]:
  """String map keys in the order `SerializeToString(deterministic=True)` of the installed protobuf
  writes them, for code that writes proto bytes by hand (datasources/encoding.py)."""
  if not _longer_key_first():
    return sorted(keys, key=lambda key: key.encode('utf-8'))
  # Bytewise, with the end of a key ranking above every byte: 'label_name' before 'label'.
  return sorted(keys, key=lambda key: list(key.encode('utf-8')) + [256])


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
