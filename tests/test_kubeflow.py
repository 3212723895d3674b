"""kubeflow_runner compiles the same pipeline into a Kubeflow Pipelines v2 / Vertex AI spec."""
import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from base import constants
from pipeline import cli
from pipeline.pipeline import create_pipeline
from tests import e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every component of the pipeline in DAG order, as base/constants.py names them.
DATA_AND_TRANSFORM = [
    constants.EXAMPLE_GEN, constants.STATISTICS_GEN, constants.SCHEMA_GEN,
    constants.CURATED_SCHEMA_GEN, constants.EXAMPLE_VALIDATOR, constants.VALIDATION_GATE,
    constants.TRANSFORM]
MODEL = [constants.TRAINER, constants.BASELINE_RESOLVER, constants.EVALUATOR, constants.PUSHER]


def _compiled_ids(component_ids):
  """The task names KFP v2 gives the components: their ids, except that the baseline Resolver
  (LatestBlessedModelStrategy) compiles into two tasks, one per resolved channel."""
  resolver = constants.BASELINE_RESOLVER
  return [i for i in component_ids if i != resolver] + (
      [f'{resolver}-model-blessing-resolver', f'{resolver}-model-resolver']
      if resolver in component_ids else [])


def _compile(flags, output):
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'kubeflow_runner.py'), *flags, '--image',
       'example/image:1', '--output-file', str(output)],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  spec = json.loads(output.read_text())
  return json_format.ParseDict(spec.get('pipelineSpec', spec), pipeline_spec_pb2.PipelineSpec(),
                               ignore_unknown_fields=True)


@pytest.mark.parametrize('tune_flags,expected', [
    ([], DATA_AND_TRANSFORM + MODEL),
    (['--tune', '--tuner-trials', '2'], DATA_AND_TRANSFORM + [constants.TUNER] + MODEL),
])
def test_compiles_every_component(cifar_archive, tmp_path, tune_flags, expected):
  flags = ['--data', cifar_archive[0], '--trust-data', '--output-dir', str(tmp_path / 'root'),
           '--model', 'simple_cnn', *tune_flags]
  output = tmp_path / 'pipeline.json'
  spec = _compile(flags, output)
  tasks = spec.root.dag.tasks
  # The same components as the pipeline `create_pipeline` builds from the same flags...
  config, _ = e2e.resolve(cli.config_from_args(cli.build_parser('').parse_args(flags)))
  built = [c.id for c in create_pipeline(config).components]
  assert sorted(tasks) == sorted(_compiled_ids(built))
  # ... which are every component the project names, and no other.
  assert sorted(built) == sorted(expected)
  # Each task runs its own component definition, and depends on the tasks that feed it.
  for name, task in tasks.items():
    assert task.component_ref.name in spec.components, name
  assert constants.VALIDATION_GATE in tasks[constants.TRANSFORM].dependent_tasks
  assert constants.EXAMPLE_GEN in tasks[constants.STATISTICS_GEN].dependent_tasks
  trainer_inputs = set(tasks[constants.TRAINER].dependent_tasks)
  assert constants.TRANSFORM in trainer_inputs
  assert (constants.TUNER in trainer_inputs) == bool(tune_flags)
  # The pipeline root is in the spec (no user-code wheel is uploaded: components name modules.*
  # functions, tests/test_compile_offline.py).
  assert str(tmp_path / 'root' / 'pipeline_root') in output.read_text()
  executors = json_format.MessageToDict(spec.deployment_spec)['executors']
  images = {e['container']['image'] for e in executors.values() if 'container' in e}
  assert images == {'example/image:1'}
