"""The two supported stacks, and the few places where their libraries differ (docs/stacks.md).

One code base runs on TFX 1.16 (Python 3.10: TensorFlow 2.16, Keras 3.6, TFMA 0.47, Beam 2.59,
numpy 1, protobuf 3.20) and on TFX 1.21 (Python 3.11-3.13: TensorFlow 2.21, Keras 3.15, TFMA 0.52,
Beam 2.77, numpy 2, protobuf 6). Every difference the code has to know about lives here as a shim
that works on both, so no other module compares versions.

Pure: imports only the libraries, and only inside the function that needs them (`base` stays cheap to
import and the stack facts readable without TensorFlow); nothing of the project.
"""
import dataclasses
import functools
import importlib.metadata
from typing import Iterable, List, Tuple


@dataclasses.dataclass(frozen=True)
class Stack:
  """One supported set of pinned libraries and what a machine needs to run it."""
  name: str
  tfx: str
  pythons: Tuple[Tuple[int, int], ...]  # the (major, minor) versions the stack's lock installs on
  min_glibc: Tuple[int, int]  # the newest manylinux tag among the stack's wheels
  lock: str  # the resolved tree, at the checkout's root
  venv: str  # each stack has its own, so switching never breaks the other


TFX116 = Stack(name='tfx116', tfx='1.16.0', pythons=((3, 10),), min_glibc=(2, 17),
               lock='requirements.lock', venv='.venv')
# ml-metadata 1.21.0 and tensorflow-data-validation 1.21.0 ship only manylinux_2_39 wheels for Linux.
TFX121 = Stack(name='tfx121', tfx='1.21.0', pythons=((3, 11), (3, 12), (3, 13)), min_glibc=(2, 39),
               lock='requirements-tfx121.lock', venv='.venv-tfx121')
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
  """The newest stack a machine with this glibc and Python can run (what `make install` picks).

  TFX 1.16 is the fallback: its wheels need only glibc 2.17, but it needs a Python 3.10.
  """
  for stack in STACKS:
    if glibc >= stack.min_glibc and python in stack.pythons:
      return stack
  return TFX116


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
