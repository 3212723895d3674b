"""base/compat.py on whichever stack is installed: the stack facts agree with the lock files, and each
shim gives what the installed libraries themselves give."""
import os
import re
import runpy
import subprocess
import sys

import pytest
import setuptools
import tensorflow as tf

from base import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('glibc, python, expected', [
    ((2, 36), (3, 10), 'tfx116'),  # Debian 12 with a Python 3.10
    ((2, 36), (3, 11), 'tfx116'),  # Debian 12's own Python: 1.21's wheels need glibc 2.39
    ((2, 35), (3, 12), 'tfx116'),  # Ubuntu 22.04 with a newer Python
    ((2, 39), (3, 12), 'tfx121'),  # Ubuntu 24.04
    ((2, 41), (3, 13), 'tfx121'),  # Debian 13
    ((2, 39), (3, 10), 'tfx116'),  # new glibc, but only a 3.10
    ((2, 39), (3, 14), 'tfx116'),  # no TFX wheels for 3.14
])
def test_stack_for_machine(glibc, python, expected):
  assert compat.stack_for_machine(glibc, python).name == expected


def test_parse_glibc():
  assert compat.parse_glibc('glibc 2.36') == (2, 36)
  assert compat.parse_glibc('ldd (Debian GLIBC 2.36-9+deb12u14) 2.36') == (2, 36)
  assert compat.parse_glibc('ldd (Ubuntu GLIBC 2.39-0ubuntu8.4) 2.39') == (2, 39)


def test_each_stack_lock_pins_its_tfx():
  for stack in compat.STACKS:
    with open(os.path.join(ROOT, stack.lock)) as f:
      assert re.search(rf'^tfx=={re.escape(stack.tfx)}$', f.read(), re.M), stack.lock


def test_installed_stack_is_the_running_tfx():
  import tfx  # pylint: disable=g-import-not-at-top
  assert compat.installed_stack().tfx == tfx.__version__
  with pytest.raises(ValueError, match='1.14.0'):
    compat.stack_of_tfx('1.14.0')


def test_tfma_config_builds_the_protos_the_evaluator_takes():
  config = compat.tfma_config()
  spec = config.MetricConfig(class_name='SparseCategoricalAccuracy', per_slice_thresholds=[
      config.PerSliceMetricThreshold(slicing_specs=[config.SlicingSpec()])])
  parsed = config.EvalConfig.FromString(config.EvalConfig(
      metrics_specs=[config.MetricsSpec(metrics=[spec])]).SerializeToString())
  assert parsed.metrics_specs[0].metrics[0].class_name == 'SparseCategoricalAccuracy'


def test_deterministic_map_order_is_protobufs():
  keys = ['label', 'label_name', 'image', 'fine_label', 'coarse_label', 'l', 'lab', 'z']
  example = tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])) for key in keys}))
  serialized = example.SerializeToString(deterministic=True)
  # Each map entry starts with its key field: tag 1 (b'\n'), length, key.
  positions = {key: serialized.index(b'\n' + bytes([len(key)]) + key.encode()) for key in keys}
  order = sorted(keys, key=positions.get)
  assert compat.deterministic_map_order(keys) == order


# --- the stack `make` picks (python3 -m base.compat choose) ---

PY310, PY313 = '/opt/py310/bin/python3.10', '/usr/bin/python3.13'


def _choose(stack='', python='', glibc=(2, 41), macos_arch=None, found=()):
  """choose() on a machine whose only working Pythons are `found` (paths ending in their version),
  each a candidate of the stack whose Python it is."""
  versions = {path: tuple(int(p) for p in path.rsplit('python', 1)[1].split('.')) for path in found}
  return compat.choose(
      stack, python, glibc, macos_arch,
      pythons_of=lambda s: [p for p in found if versions[p] in s.pythons],
      version_of=versions.get)


@pytest.mark.parametrize('glibc, found, stack, python, reason', [
    ((2, 41), (PY313, PY310), 'tfx121', PY313, 'stack tfx121: glibc 2.41 and Python 3.13 found'),
    ((2, 36), (PY313, PY310), 'tfx116', PY310,
     "stack tfx116: glibc 2.36 < 2.39 needed by TFX 1.21's ml-metadata wheels"),
    ((2, 39), (PY310,), 'tfx116', PY310, 'stack tfx116: glibc 2.39, but no Python 3.11-3.13 found'),
    ((2, 36), (PY313,), 'tfx116', '',  # make install then says how to get a Python 3.10
     "stack tfx116: glibc 2.36 < 2.39 needed by TFX 1.21's ml-metadata wheels; "
     'glibc 2.36, but no Python 3.10 found'),
])
def test_choose_picks_the_newest_stack_the_machine_runs(glibc, found, stack, python, reason):
  choice = _choose(glibc=glibc, found=found)
  assert (choice.stack.name, choice.python, choice.reason) == (stack, python, reason)


def test_choose_on_macos_goes_by_the_processor():
  assert _choose(glibc=None, macos_arch='arm64', found=(PY313, PY310)).stack.name == 'tfx121'
  assert _choose(glibc=None, macos_arch='x86_64', found=(PY313, PY310)).stack.name == 'tfx116'


def test_stack_and_python_override_the_choice():
  assert _choose('tfx116', found=(PY313, PY310)).python == PY310
  assert _choose(python=PY310, found=(PY313, PY310)).stack.name == 'tfx116'
  assert _choose(python=PY313, found=(PY313, PY310)).stack.name == 'tfx121'
  with pytest.raises(ValueError, match=r'^STACK=tfx999: must be one of tfx116, tfx121$'):
    _choose('tfx999')
  with pytest.raises(ValueError, match=r"^STACK=tfx121: glibc 2.36 < 2.39 needed by TFX 1.21's"):
    _choose('tfx121', glibc=(2, 36), found=(PY313,))
  with pytest.raises(ValueError, match=r'^PYTHON=/usr/bin/python3.13 is Python 3.13; tfx116 needs '
                     r'Python 3.10$'):
    _choose('tfx116', python=PY313, found=(PY313,))
  with pytest.raises(ValueError, match=r'^PYTHON=/nowhere/python: does not run$'):
    _choose(python='/nowhere/python')


def test_python_candidates_path_first_then_newest_pyenv(tmp_path):
  for release in ('3.11.9', '3.13.0', '3.12.10', '3.12.2', '3.10.13'):
    (tmp_path / '.pyenv' / 'versions' / release / 'bin').mkdir(parents=True)
    minor = release.rsplit('.', 1)[0]
    (tmp_path / '.pyenv' / 'versions' / release / 'bin' / f'python{minor}').touch()
  pyenv = lambda release: str(tmp_path / '.pyenv' / 'versions' / release / 'bin' /
                              f"python{release.rsplit('.', 1)[0]}")
  assert compat.python_candidates(compat.TFX121, str(tmp_path)) == [
      'python3.13', 'python3.12', 'python3.11',
      pyenv('3.13.0'), pyenv('3.12.10'), pyenv('3.12.2'), pyenv('3.11.9')]
  assert compat.python_candidates(compat.TFX116, str(tmp_path)) == ['python3.10', pyenv('3.10.13')]


def test_machine_facts_are_the_running_systems():
  assert compat.machine_glibc() == compat.parse_glibc(os.confstr('CS_GNU_LIBC_VERSION'))
  assert compat.python_version(sys.executable) == sys.version_info[:2]
  assert compat.python_version(os.path.join(ROOT, 'no-such-python')) is None


def _make(*args):
  return subprocess.run(['make', '-s', '--no-print-directory', *args], cwd=ROOT, text=True,
                        capture_output=True, check=False)


def test_make_prints_its_stack_and_refuses_a_bad_one_in_one_line():
  installed = compat.installed_stack().name
  result = _make('stack', f'STACK={installed}')
  assert result.returncode == 0 and result.stdout.startswith(f'stack {installed}: STACK={installed} given')
  assert f'venv {compat.installed_stack().venv}' in result.stdout
  result = _make('stack', 'STACK=tfx999')
  assert result.returncode == 2
  assert re.fullmatch(r'Makefile:\d+: \*\*\* STACK=tfx999: must be one of tfx116, tfx121\.  Stop\.\n',
                      result.stderr)


def test_setup_py_pins_each_stacks_own_versions(monkeypatch):
  """setup.py's pins for a Python version are the versions in that Python's stack's lock."""
  from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top
  metadata = {}
  monkeypatch.setattr(setuptools, 'setup', metadata.update)
  runpy.run_path(os.path.join(ROOT, 'setup.py'))
  for stack in compat.STACKS:
    with open(os.path.join(ROOT, stack.lock)) as f:
      locked = dict(line.strip().lower().replace('_', '-').split('==') for line in f
                    if '==' in line and not line.startswith('#'))
    python = {'python_version': compat._dotted(stack.pythons[0])}  # pylint: disable=protected-access
    pins = [r for r in map(Requirement, metadata['install_requires'])
            if r.specifier and (r.marker is None or r.marker.evaluate(python))]
    assert 'tfx' in {r.name for r in pins}, stack.name
    assert {r.name.lower(): str(r.specifier).lstrip('=') for r in pins} == {
        r.name.lower(): locked.get(r.name.lower()) for r in pins}, stack.name


def test_tfma_metrics_proto_reads_tfmas_records_without_importing_tfma():
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2  # pylint: disable=g-import-not-at-top
  record = metrics_for_slice_pb2.MetricsForSlice()
  entry = record.metric_keys_and_values.add()
  entry.key.name, entry.value.double_value.value = 'sparse_categorical_accuracy', 0.625
  probe = ('import sys; from base import compat; module = compat.tfma_metrics_proto(); '
           f'record = module.MetricsForSlice.FromString(bytes.fromhex({record.SerializeToString().hex()!r})); '
           'entry = record.metric_keys_and_values[0]; '
           "print(entry.key.name, entry.value.double_value.value, "
           "sorted(m for m in ('tensorflow', 'tensorflow_model_analysis') if m in sys.modules))")
  result = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True, text=True,
                          check=False)
  assert result.stdout.strip() == 'sparse_categorical_accuracy 0.625 []', result.stderr[-2000:]
  assert (compat.tfma_metrics_proto().MetricsForSlice.DESCRIPTOR.full_name ==
          metrics_for_slice_pb2.MetricsForSlice.DESCRIPTOR.full_name)
