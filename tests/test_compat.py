"""base/compat.py on whichever stack is installed: the stack facts agree with the lock files, and each
shim gives what the installed libraries themselves give."""
import os
import re

import pytest
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
