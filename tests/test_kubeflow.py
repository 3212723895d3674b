"""kubeflow_runner compiles the same pipeline into a Kubeflow Pipelines v2 / Vertex AI spec."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compiles_the_pipeline(cifar_archive, tmp_path):
  output = tmp_path / 'pipeline.json'
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'kubeflow_runner.py'), '--data', cifar_archive[0],
       '--trust-data', '--output-dir', str(tmp_path / 'root'), '--image', 'example/image:1',
       '--model', 'simple_cnn', '--output-file', str(output)],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  spec = json.loads(output.read_text())
  pipeline_spec = spec.get('pipelineSpec', spec)
  tasks = pipeline_spec['root']['dag']['tasks']
  for component in ('Cifar100ExampleGen', 'StatisticsGen', 'SchemaGen', 'CuratedSchemaGen',
                    'ExampleValidator', 'ValidationGate', 'Transform', 'Trainer'):
    assert component in tasks, sorted(tasks)
  # The user-module wheels go to the pipeline root (on GCS for a real deployment: the compiler
  # uploads them there, which needs credentials; this test uses a local root).
  assert str(tmp_path / 'root' / 'pipeline_root') in output.read_text()
  assert 'example/image:1' in output.read_text()
