"""Both notebooks, executed headless against the shared pipeline run: no cell fails, and the tables
and charts they promise are there and not empty."""
import json
import os
import sys

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_NAME = 'cifar100-tests'


@pytest.fixture
def kernel_manager(tmp_path):
  """A kernel on this interpreter (the venv's), whatever kernelspecs the machine has: a user's own
  `python3` spec would otherwise win over the venv's."""
  spec_dir = tmp_path / 'kernels' / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'cifar100 tests', 'language': 'python'}))
  specs = KernelSpecManager(kernel_dirs=[str(tmp_path / 'kernels')])
  manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
  yield manager
  if manager.has_kernel:  # nbclient leaves a kernel it did not create running
    manager.shutdown_kernel(now=True)


def execute(name, output_dir, kernel_manager, monkeypatch, checks):
  """Runs notebooks/<name>.ipynb with CIFAR100_OUTPUT_DIR set, plus a last cell that prints the
  JSON of `checks` (an expression over the notebook's variables); returns (notebook, checks)."""
  monkeypatch.setenv('CIFAR100_OUTPUT_DIR', output_dir)
  monkeypatch.delenv('CIFAR100_RUN', raising=False)
  monkeypatch.delenv('MPLBACKEND', raising=False)  # the inline backend, for image/png outputs
  notebook = nbformat.read(os.path.join(ROOT, 'notebooks', f'{name}.ipynb'), as_version=4)
  notebook.cells.append(nbformat.v4.new_code_cell(
      'import json as _json, sys as _sys\n'
      "print(_json.dumps({'executable': _sys.executable, 'prefix': _sys.prefix,\n"
      f"                   **({checks})}}))"))
  nbclient.NotebookClient(notebook, km=kernel_manager, timeout=600,
                          resources={'metadata': {'path': ROOT}}).execute()
  for cell in notebook.cells:
    assert not [o for o in cell.get('outputs', []) if o.output_type == 'error'], cell.source
  result = json.loads(notebook.cells[-1].outputs[-1]['text'])
  assert result.pop('executable') == sys.executable  # the venv's python ran the notebook
  assert result.pop('prefix') == sys.prefix
  return notebook, result


def outputs_with(notebook, mime):
  return [o for cell in notebook.cells for o in cell.get('outputs', [])
          if mime in o.get('data', {})]


def test_inspect_metadata_notebook(pipeline_run, kernel_manager, monkeypatch):
  config, _ = pipeline_run
  notebook, checks = execute(
      'inspect_metadata', config.runner.output_dir, kernel_manager, monkeypatch,
      "{'runs': run_table.to_dict('records'), 'lineage': lineage[['type', 'producer']].values.tolist(),"
      " 'artifacts': len(artifacts), 'executions': len(executions)}")
  assert checks['runs'] and checks['runs'][-1]['state'] == 'COMPLETE'
  assert checks['runs'][-1]['num_classes'] == len(config.data.class_names)
  latest = checks['runs'][-1]
  assert (latest['study'], latest['variant'], latest['seed']) == ('', '', config.training.seed)
  assert 0 <= latest['test_accuracy'] <= latest['test_top_k_accuracy'] <= 1
  for link in (['Model', 'Trainer'], ['TransformGraph', 'Transform'],
               ['Examples', 'Cifar100ExampleGen']):
    assert link in checks['lineage']
  assert checks['artifacts'] > 0 and checks['executions'] > 0
  assert len(outputs_with(notebook, 'text/html')) >= 4  # runs, lineage, executions, artifacts


def test_model_analysis_notebook(pipeline_run, kernel_manager, monkeypatch):
  config, sizes = pipeline_run
  notebook, checks = execute(
      'model_analysis', config.runner.output_dir, kernel_manager, monkeypatch,
      "{'per_class': per_class['class'].tolist(), 'slices': len(slices),"
      " 'matrix': list(matrix.shape), 'matrix_total': float(matrix.sum())}")
  classes = list(config.data.class_names)
  assert checks['per_class'] == classes  # one row per class, in the team's order
  assert checks['slices'] == 1 + len(classes) + len(set(config.data.coarse_names))
  assert checks['matrix'] == [len(classes), len(classes)]
  assert checks['matrix_total'] == sizes['test']
  assert len(outputs_with(notebook, 'image/png')) >= 2  # per-class accuracy, confusion matrix
  assert len(outputs_with(notebook, 'text/html')) >= 3  # slices, per class, confusion table
