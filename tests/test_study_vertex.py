"""`pipeline.study --runner vertex`: one Vertex AI pipeline job per run, compiled offline, and the
refusals before anything compiles."""
import argparse
import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from base import constants
from base.errors import UserError
from modules import trainer
from pipeline import study

IMAGE = 'europe-west4-docker.pkg.dev/my-project/repo/cifar100-tfx:1'


def _trainer_custom_config(path) -> dict:
  spec = json.loads(path.read_text())
  spec = json_format.ParseDict(spec.get('pipelineSpec', spec), pipeline_spec_pb2.PipelineSpec(),
                               ignore_unknown_fields=True)
  value = json_format.MessageToDict(
      spec.root.dag.tasks[constants.TRAINER].inputs.parameters['custom_config'].runtime_value)
  text = value['constantValue']['stringValue'] if 'constantValue' in value else value['constant']
  return json.loads(text)


def test_a_study_compiles_one_pipeline_job_per_run(cifar_archive, tmp_path, capsys):
  output_file = tmp_path / 'jobs' / 'study.json'
  output_file.parent.mkdir()
  study.main(['augmentation', '--values', 'none,strong', '--data', cifar_archive[0],
              '--trust-data', '--model', 'simple_cnn', '--epochs', '1',
              '--output-dir', str(tmp_path / 'out'), '--runner', 'vertex', '--image', IMAGE,
              '--region', 'europe-west4', '--output-file', str(output_file)])
  out = capsys.readouterr().out
  assert 'compiled only (--submit submits them)' in out
  for value in ('none', 'strong'):
    path = tmp_path / 'jobs' / f'study-augmentation-augment_{value}-seed0.json'
    assert path.is_file(), out
    config = _trainer_custom_config(path)
    # Each job is its variant's run, tagged as a local study run is.
    assert config[constants.STUDY] == {'study': 'augmentation', 'variant': f'augment={value}'}
    assert config[trainer.TRAINING]['augment'] == value
    assert config[trainer.TRAINING]['seed'] == 0
    assert 'COMPILED' in out and str(path) in out
  assert not (tmp_path / 'out' / 'metadata.sqlite').exists()  # nothing ran here


def _args(*argv):
  return study.build_parser().parse_args(['augmentation', '--data', '/gcs/b/c.tar.gz', *argv])


def test_vertex_flags_reach_every_compile_but_the_studys_own_do_not():
  args = _args('--runner', 'vertex', '--image', IMAGE, '--project', 'p', '--submit',
               '--training-machine-type', 'n1-standard-8', '--gpu', 'NVIDIA_L4:1',
               '--output-file', 'x.json')
  assert study.vertex_argv(args) == ['--image', IMAGE, '--project', 'p',
                                     '--training-machine-type', 'n1-standard-8',
                                     '--gpu', 'NVIDIA_L4:1']


def test_file_names_name_study_variant_and_seed():
  run = study.PlannedRun(study.expand('augmentation', study.cli.config_from_args(_args()),
                                      'strong')[0], 3, [])
  assert study.vertex_file('gs/p.json', 'augmentation', run) == \
      'gs/p-augmentation-augment_strong-seed3.json'


@pytest.mark.parametrize('argv,message', [
    (['--runner', 'vertex'], '--runner vertex needs --image (the pipeline image: make image '
     'IMAGE=URI)'),
    (['--runner', 'vertex', '--image', IMAGE, '--output-dir', 'gs://b/o', '--submit'],
     '--submit needs --project (the GCP project to run in)'),
    (['--image', IMAGE], '--image is a --runner vertex flag (a local study runs here)'),
    (['--submit'], '--submit is a --runner vertex flag (a local study runs here)'),
])
def test_refused_before_anything_compiles(argv, message):
  args = _args(*argv)
  with pytest.raises(UserError) as raised:
    study.check_runner(args, study.cli.config_from_args(args))
  assert str(raised.value) == message


def test_runner_is_a_choice():
  with pytest.raises(SystemExit):
    study.build_parser().parse_args(['augmentation', '--runner', 'cloud'])
  assert isinstance(study.build_parser(), argparse.ArgumentParser)
