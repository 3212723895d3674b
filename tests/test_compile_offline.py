"""Compiling for Kubeflow/Vertex needs no network and no bucket; the components name importable
functions (no user-code wheel), and a code fingerprint keeps their cache honest."""
import json
import os
import shutil
import subprocess
import sys

from pipeline import pipeline as pipeline_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs kubeflow_runner.py with every non-loopback connection refused (name lookups included), so a
# compile that would upload to gs:// or ask Google for credentials fails loudly here.
_OFFLINE_LAUNCHER = '''
import runpy, socket, sys

def _refuse(*args, **kwargs):
  raise OSError('network access during compilation: %r' % (args[:1],))

_getaddrinfo = socket.getaddrinfo
def _local_only(host, *args, **kwargs):
  if host not in ('localhost', '127.0.0.1', '::1', None):
    _refuse(host)
  return _getaddrinfo(host, *args, **kwargs)

socket.getaddrinfo = _local_only
socket.create_connection = _refuse
_connect = socket.socket.connect
def _connect_local(self, address):
  if isinstance(address, tuple) and address[0] not in ('localhost', '127.0.0.1', '::1'):
    _refuse(address)
  return _connect(self, address)
socket.socket.connect = _connect_local
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_compiles_with_a_gcs_output_dir_without_network(cifar_archive, tmp_path):
  output = tmp_path / 'pipeline.json'
  env = {**os.environ, 'GOOGLE_APPLICATION_CREDENTIALS': str(tmp_path / 'no-credentials.json'),
         'NO_GCE_CHECK': 'True'}
  result = subprocess.run(
      [sys.executable, '-c', _OFFLINE_LAUNCHER, os.path.join(ROOT, 'kubeflow_runner.py'),
       '--data', cifar_archive[0], '--trust-data', '--output-dir', 'gs://no-such-bucket/cifar100',
       '--image', 'example/image:1', '--model', 'simple_cnn', '--tune', '--tuner-trials', '1',
       '--output-file', str(output)],
      capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  text = output.read_text()
  spec = json.loads(text)
  tasks = spec.get('pipelineSpec', spec)['root']['dag']['tasks']
  assert {'Transform', 'Tuner', 'Trainer'} <= set(tasks), sorted(tasks)
  for function in ('modules.transform.preprocessing_fn', 'modules.trainer.run_fn',
                   'modules.tuner.tuner_fn'):
    assert function in text
  assert '.whl' not in text and 'module_path' not in text  # no user-code wheel anywhere
  assert 'gs://no-such-bucket/cifar100/pipeline_root' in text
  # The three user-code components carry the code fingerprint (in their custom_config).
  assert text.count(pipeline_module.code_fingerprint()) >= 3


def _copy_sources(target) -> str:
  for package in pipeline_module.CODE_PACKAGES:
    shutil.copytree(os.path.join(ROOT, package), os.path.join(target, package),
                    ignore=shutil.ignore_patterns('__pycache__'))
  return str(target)


def test_code_fingerprint_follows_the_sources(tmp_path):
  root = _copy_sources(tmp_path / 'project')
  packages = pipeline_module.CODE_PACKAGES
  before = pipeline_module.source_fingerprint(root, packages)
  assert before == pipeline_module.code_fingerprint()  # the installed tree's, same bytes
  assert pipeline_module.source_fingerprint(root, packages) == before  # deterministic

  trainer = os.path.join(root, 'modules', 'trainer.py')
  with open(trainer, 'a') as f:
    f.write('\n# a changed line\n')
  changed = pipeline_module.source_fingerprint(root, packages)
  assert changed != before

  # A new module counts too; bytecode caches and non-Python files do not.
  with open(os.path.join(root, 'base', 'extra.py'), 'w') as f:
    f.write('X = 1\n')
  added = pipeline_module.source_fingerprint(root, packages)
  assert added not in (before, changed)
  os.makedirs(os.path.join(root, 'datasources', '__pycache__'), exist_ok=True)
  with open(os.path.join(root, 'datasources', '__pycache__', 'x.pyc'), 'wb') as f:
    f.write(b'\0')
  with open(os.path.join(root, 'modules', 'notes.txt'), 'w') as f:
    f.write('not code')
  assert pipeline_module.source_fingerprint(root, packages) == added
