"""pipeline.study's pure parts: each named study's variants, --values, --vary grids, labels, the
runs' command lines, which runs are done, failure lines, time estimates; and bad input through the
real command line."""
import os
import subprocess
import sys

import pytest

from base.configs import DataConfig, PipelineConfig, TrainingConfig
from base.errors import UserError
from pipeline import cli
from pipeline import study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base(**training) -> PipelineConfig:
  return PipelineConfig(training=TrainingConfig(**training))


def labels(name, config=None, values=None, vary=()):
  return [v.label for v in study.expand(name, config or base(), values, vary)]


# ---------------------------------------------------------------- named studies -------------

def test_every_named_study_is_listed():
  assert set(study.STUDIES) == {'transfer_vs_scratch', 'augmentation', 'fine_tune_layers',
                                'num_classes', 'learning_rate', 'optimizer', 'batch_size',
                                'image_size'}


def test_transfer_vs_scratch_defaults_to_mobilenet_frozen_and_fine_tuned():
  assert labels('transfer_vs_scratch') == [
      'model=resnet', 'model=simple_cnn', 'model=mobilenet,fine_tune_layers=0',
      'model=mobilenet,fine_tune_layers=all']


def test_transfer_vs_scratch_takes_the_base_transfer_model():
  assert labels('transfer_vs_scratch', base(model='vgg16'))[2:] == [
      'model=vgg16,fine_tune_layers=0', 'model=vgg16,fine_tune_layers=all']


def test_transfer_vs_scratch_values_are_models():
  assert labels('transfer_vs_scratch', values='simple_cnn,efficientnet_b0') == [
      'model=simple_cnn', 'model=efficientnet_b0,fine_tune_layers=0',
      'model=efficientnet_b0,fine_tune_layers=all']
  with pytest.raises(UserError, match="Unknown model 'alexnet'"):
    study.expand('transfer_vs_scratch', base(), 'resnet,alexnet')


def test_from_scratch_variant_resets_a_mobilenet_width():
  """--alpha 0.25 (for the offline MobileNet weights) would make resnet refuse to build."""
  config = base(model='mobilenet', alpha=0.25, weights='/w.h5')
  variants = study.expand('transfer_vs_scratch', config)
  resnet = study.parse_run(study.run_argv(['--model', 'mobilenet', '--alpha', '0.25'],
                                          variants[0], 'transfer_vs_scratch', 0,
                                          study.variable_flags()))
  mobilenet = study.parse_run(study.run_argv(['--model', 'mobilenet', '--alpha', '0.25'],
                                             variants[3], 'transfer_vs_scratch', 0,
                                             study.variable_flags()))
  assert (resnet.training.model, resnet.training.alpha) == ('resnet', 1.0)
  assert variants[0].label == 'model=resnet'  # the reset does not name the variant
  assert (mobilenet.training.alpha, mobilenet.training.fine_tune_layers) == (0.25, 'all')


def test_augmentation():
  assert labels('augmentation') == ['augment=none', 'augment=basic', 'augment=strong']
  assert labels('augmentation', values='strong,none') == ['augment=strong', 'augment=none']


def test_fine_tune_layers_from_the_backbone_depth():
  import keras
  # MobileNet v1's backbone as keras.applications builds it (what set_fine_tune_layers counts).
  depth = len(keras.applications.MobileNet(weights=None, include_top=False,
                                           input_shape=(96, 96, 3)).layers)
  keras.backend.clear_session()
  assert labels('fine_tune_layers', base(model='mobilenet')) == [
      'fine_tune_layers=0', f'fine_tune_layers={round(depth / 10)}',
      f'fine_tune_layers={depth // 2}', 'fine_tune_layers=all']


def test_fine_tune_layer_counts():
  assert study.fine_tune_values_for_depth(86) == ['0', '9', '43', 'all']
  assert study.fine_tune_values_for_depth(19) == ['0', '2', '9', 'all']  # vgg16's 19 layers
  assert study.fine_tune_values_for_depth(3) == ['0', '1', 'all']  # a few == half: once


def test_fine_tune_layers_needs_a_transfer_model():
  with pytest.raises(UserError, match='--model resnet has no pretrained backbone'):
    study.expand('fine_tune_layers', base(model='resnet'))


def test_num_classes():
  assert labels('num_classes') == [f'num_classes={n}' for n in (20, 40, 60, 80)]
  with pytest.raises(UserError, match='--classes fixes the classes'):
    study.expand('num_classes', PipelineConfig(data=DataConfig(classes=('apple', 'bee'))))


def test_learning_rate_around_the_models_default_or_the_given_one():
  assert labels('learning_rate', base(model='resnet')) == [
      'learning_rate=0.01', 'learning_rate=0.03', 'learning_rate=0.1', 'learning_rate=0.3']
  assert labels('learning_rate', base(model='simple_cnn')) == [
      'learning_rate=0.0001', 'learning_rate=0.0003', 'learning_rate=0.001',
      'learning_rate=0.003']
  assert labels('learning_rate', base(model='simple_cnn', learning_rate=0.05)) == [
      'learning_rate=0.005', 'learning_rate=0.015', 'learning_rate=0.05', 'learning_rate=0.15']


def test_optimizer_each_at_its_own_learning_rate():
  assert labels('optimizer', base(model='simple_cnn')) == [
      'optimizer=adam,learning_rate=0.001',
      'optimizer=adamw,learning_rate=0.001,weight_decay=0.05',  # 100 x the default 5e-4
      'optimizer=sgd,learning_rate=0.01',
      'optimizer=rmsprop,learning_rate=0.001',
      'optimizer=muon,learning_rate=0.01']
  # The resnet's own recipe: SGD at 0.1; Muon, SGD for all but the kernels, at SGD's rate.
  assert labels('optimizer', base(model='resnet'))[2:] == [
      'optimizer=sgd,learning_rate=0.1', 'optimizer=rmsprop,learning_rate=0.001',
      'optimizer=muon,learning_rate=0.1']
  with pytest.raises(UserError, match="unknown optimizer 'lamb'"):
    study.expand('optimizer', base(), 'adam,lamb')


def test_batch_size():
  assert labels('batch_size') == [f'batch_size={n}' for n in (32, 64, 128, 256)]


def test_image_size_larger_for_transfer_models():
  assert labels('image_size', base(model='simple_cnn')) == [
      'image_size=32', 'image_size=64', 'image_size=96']
  assert labels('image_size', base(model='mobilenet')) == [
      f'image_size={n}' for n in (32, 64, 96, 128, 160, 224)]


def test_unknown_study_and_bad_names():
  with pytest.raises(UserError, match="unknown study 'augmentations'; named studies: "
                     'transfer_vs_scratch, augmentation'):
    study.expand('augmentations', base())
  with pytest.raises(UserError, match='use letters, digits'):
    study.expand('my study', base(), vary=[('augment', ['none'])])


def test_values_errors():
  with pytest.raises(UserError, match='expected comma-separated values'):
    study.expand('augmentation', base(), 'none,,strong')
  with pytest.raises(UserError, match='variant augment=none is listed twice'):
    study.expand('augmentation', base(), 'none,strong,none')


# ---------------------------------------------------------------- --vary --------------------

def test_vary_accepts_flag_or_dest_spelling():
  flags = study.variable_flags()
  assert study.parse_vary('batch-size=32,64', flags) == ('batch_size', ['32', '64'])
  assert study.parse_vary('--batch-size=32', flags) == ('batch_size', ['32'])
  assert study.parse_vary('fine_tune_layers=0,all', flags) == ('fine_tune_layers', ['0', 'all'])
  assert study.parse_vary('bless-min-accuracy=0.5', flags) == ('min_accuracy', ['0.5'])
  assert study.parse_vary('num-classes=20', flags) == ('num_classes', ['20'])  # a data flag


@pytest.mark.parametrize('text, message', [
    ('augment', 'expected FLAG=V1,V2'),
    ('colour=red', 'not a local_runner.py flag that takes a value'),
    ('jit=1', 'not a local_runner.py flag that takes a value'),  # a switch
    ('output-dir=a,b', 'a study cannot vary it'),
    ('pipeline-name=a', 'a study cannot vary it'),
    ('seed=1,2', 'a study cannot vary it'),
    ('augment=', 'expected comma-separated values'),
])
def test_vary_errors(text, message):
  with pytest.raises(UserError, match=message):
    study.parse_vary(text, study.variable_flags())


def test_two_vary_give_the_grid():
  flags = study.variable_flags()
  vary = [study.parse_vary('augment=none,strong', flags),
          study.parse_vary('batch-size=32,64', flags)]
  assert labels('aug_x_batch', vary=vary) == [
      'augment=none,batch_size=32', 'augment=none,batch_size=64',
      'augment=strong,batch_size=32', 'augment=strong,batch_size=64']


def test_vary_errors_against_the_study():
  vary = [('augment', ['none', 'strong'])]
  with pytest.raises(UserError, match="not the named study 'augmentation'"):
    study.expand('augmentation', base(), vary=vary)
  with pytest.raises(UserError, match='--values belongs to a named study'):
    study.expand('mine', base(), 'a,b', vary)
  with pytest.raises(UserError, match='--vary augment is given twice'):
    study.expand('mine', base(), vary=vary + [('augment', ['basic'])])


# ---------------------------------------------------------------- command lines -------------

def parse_study_args(*argv):
  return study.build_parser().parse_args(list(argv))


def test_base_argv_carries_the_users_flags_and_not_the_studys():
  args = parse_study_args('augmentation', '--model', 'mobilenet', '--weights', '/w.h5',
                          '--classes', 'apple,bee', '--no-baseline', '--epochs', '3',
                          '--seeds', '2', '--values', 'none,strong', '--dry-run',
                          '--seed', '7')
  argv = study.base_argv(args)
  for study_only in ('--seeds', '--values', '--dry-run', 'augmentation', '--seed'):
    assert study_only not in argv
  # Parsed again as local_runner parses it: the same config.
  expected = cli.config_from_args(args)
  assert study.parse_run(argv + ['--seed', '7']) == expected


def test_base_argv_keeps_a_given_epochs_equal_to_the_default():
  # `--epochs 45` (the default's value) given explicitly trains exactly 45 epochs, no time budget:
  # each run of the study must get it too.
  args = parse_study_args('augmentation', '--epochs', '45')
  argv = study.base_argv(args)
  assert argv[argv.index('--epochs') + 1] == '45'
  assert study.parse_run(argv + ['--seed', '0']).training.time_budget is None
  assert '--epochs' not in study.base_argv(parse_study_args('augmentation'))


def test_run_argv_variant_wins_and_tags_the_run():
  variant = study.expand('augmentation', base(), 'strong')[0]
  argv = study.run_argv(['--augment', 'none', '--epochs', '3'], variant, 'augmentation', 5,
                        study.variable_flags())
  config = study.parse_run(argv)
  assert config.training.augment == 'strong' and config.training.epochs == 3
  assert config.training.seed == 5
  assert (config.study.study, config.study.variant) == ('augmentation', 'augment=strong')
  assert config.evaluation.compare_to_baseline is False  # see study.STUDY_RUN_FLAGS


def test_parse_run_refuses_like_local_runner_in_one_line():
  with pytest.raises(UserError, match="argument --batch-size: invalid int value: 'abc'"):
    study.parse_run(['--batch-size', 'abc'])


def test_seeds():
  assert study.seeds_of(3, 2) == [3, 4]
  with pytest.raises(UserError, match='--seeds 0: must be 1 or more'):
    study.seeds_of(0, 0)


def test_completed_runs_of_the_same_pipeline_study_variant_and_seed():
  def record(variant, seed, state='COMPLETE', pipeline='cifar100', name='augmentation'):
    return {'pipeline': pipeline, 'study': name, 'variant': variant, 'seed': seed,
            'state': state, 'test_accuracy': 0.5}
  records = [record('augment=none', 0), record('augment=none', 1, 'FAILED'),
             record('augment=strong', 0, 'CACHED'), record('augment=basic', 0, pipeline='other'),
             record('augment=basic', 1, name='other'), record('augment=basic', 2, 'RUNNING')]
  assert set(study.completed(records, 'cifar100', 'augmentation')) == {
      ('augment=none', 0), ('augment=strong', 0)}


def test_done_runs_count_only_with_the_same_training_settings():
  import dataclasses
  same, changed, new = planned(epochs=3), planned(epochs=3), planned(epochs=3)
  same.variant = study.Variant((('augment', 'none'),))
  changed.variant = study.Variant((('augment', 'strong'),))
  new.variant = study.Variant((('augment', 'basic'),))
  recorded = dataclasses.asdict(TrainingConfig(epochs=3))  # as the Trainer's custom_config holds it
  done = {('augment=none', 0): {'run_id': 'r1', 'training': recorded, 'test_accuracy': 0.4,
                                'duration_sec': 80.0},
          ('augment=strong', 0): {'run_id': 'r2', 'training': {**recorded, 'epochs': 10}}}
  notes = study.mark_done([same, changed, new], done)
  assert (same.state, same.test_accuracy, same.seconds) == ('DONE', 0.4, 80.0)
  assert changed.state == new.state == 'TO RUN'
  assert notes == ['augment=strong seed 0: done in run r2 with other settings (epochs 10 -> 3): '
                   'runs again']


# ---------------------------------------------------------------- the study ledger ----------

def test_ledger_attributes_the_runs_that_stopped_before_their_trainer(tmp_path):
  """Each ledger entry claims the first run of its pipeline that started between its start and
  end (the next entry's start when the study was killed and wrote no end); a run whose Trainer
  recorded the tag keeps it; runs outside every entry stay of no study."""
  import datetime
  from pipeline import runs
  t0 = datetime.datetime(2026, 12, 3, 7, 0, 0, tzinfo=datetime.timezone.utc).timestamp()

  def record(run_id, at, pipeline='p', name='', variant='', seed=None):
    # As runs.list_runs gives `started`: local time, whole seconds, with the UTC offset.
    started = datetime.datetime.fromtimestamp(at).astimezone().isoformat(timespec='seconds')
    return {'run_id': run_id, 'pipeline': pipeline, 'started': started, 'study': name,
            'variant': variant, 'seed': seed, 'state': 'FAILED'}

  out = str(tmp_path)
  entry = {'pipeline': 'p', 'study': 's'}
  runs.append_ledger(out, {**entry, 'variant': 'a=1', 'seed': 0, 'started': t0 + 0.5})
  runs.append_ledger(out, {**entry, 'variant': 'a=1', 'seed': 0, 'started': t0 + 0.5,
                           'ended': t0 + 100})
  runs.append_ledger(out, {**entry, 'variant': 'a=2', 'seed': 0, 'started': t0 + 190,
                           'ended': t0 + 300})
  runs.append_ledger(out, {**entry, 'variant': 'a=3', 'seed': 1, 'started': t0 + 390})  # killed
  with open(runs.ledger_path(out), 'a') as f:
    f.write('{"pipeline": "p", "study": "s", "vari')  # a line cut short by the kill
  ledger = runs.read_ledger(out)
  assert [(e['variant'], e.get('ended')) for e in ledger] == [
      ('a=1', t0 + 100), ('a=2', t0 + 300), ('a=3', None)]
  records = [record('plain', t0 - 50), record('r1', t0 + 0.9), record('r1-again', t0 + 50),
             record('r2', t0 + 200, name='s', variant='a=2', seed=0),
             record('other', t0 + 200, pipeline='q'), record('r3', t0 + 400.7),
             record('later', t0 + 900)]
  found = {r['run_id']: (r['study'], r['variant'], r['seed'], r.get('attributed'))
           for r in runs.attribute_runs(records, ledger)}
  assert found == {'plain': ('', '', None, None), 'r1': ('s', 'a=1', 0, 'ledger'),
                   'r1-again': ('', '', None, None), 'r2': ('s', 'a=2', 0, None),
                   'other': ('', '', None, None), 'r3': ('s', 'a=3', 1, 'ledger'),
                   'later': ('', '', None, None)}
  assert records[1]['study'] == ''  # the records given are not changed
  assert runs.read_ledger(str(tmp_path / 'none')) == []


def test_momentum_refused_for_every_variant_before_the_first_run(cifar_archive, tmp_path):
  """Keras' SGD refuses a momentum outside [0, 1], but only when training starts: the check of
  every variant catches it before the first run."""
  import keras
  with pytest.raises(ValueError, match='momentum'):
    keras.optimizers.SGD(momentum=1.5)
  out = str(tmp_path / 'out')
  start = ['--data', cifar_archive[0], '--trust-data', '--model', 'simple_cnn', '--optimizer',
           'sgd', '--output-dir', out]
  flags = study.variable_flags()
  variants = study.expand('m', study.parse_run(start), vary=[('momentum', ['0.9', '1.5'])])
  planned_runs = [study.PlannedRun(v, 0, study.run_argv(start, v, 'm', 0, flags))
                  for v in variants]
  with pytest.raises(UserError) as error:
    study.check_variants(planned_runs)
  assert str(error.value) == 'variant momentum=1.5: --momentum 1.5: must be between 0 and 1'
  assert planned_runs[0].config is not None  # momentum=0.9 passed
  assert not os.path.exists(out)


# ---------------------------------------------------------------- failures, estimates -------

def test_failure_reason():
  assert study.failure_reason(['x', 'error: --data /x: no such file', '']) == (
      None, '--data /x: no such file')
  console = ['Pipeline cifar100:', '  Cifar100ExampleGen done in 3 s',
             '  Trainer failed: ValueError: `momentum` must be a float between [0, 1].',
             'the full log: /tmp/x.log']
  assert study.failure_reason(console) == (
      'Trainer', 'ValueError: `momentum` must be a float between [0, 1].')
  traceback = ['Traceback (most recent call last):', '  File "a.py", line 1, in <module>',
               'ValueError: `momentum` must be a float between [0, 1].',
               'I1203 some log line after it']
  assert study.failure_reason(traceback) == (
      None, 'ValueError: `momentum` must be a float between [0, 1].')
  assert study.failure_reason([
      'tensorflow.python.framework.errors_impl.NotFoundError: /x; No such file'])[1].startswith(
          'tensorflow.python.framework.errors_impl.NotFoundError: /x')
  assert study.failure_reason(['Killed']) == (None, 'Killed')
  assert study.failure_reason([]) == (None, 'no output')


def stats(model='simple_cnn', image_size=32, batch_size=32, ms=50.0, cpu='CPU X', cores=2,
          fine_tune_layers='0', precision='auto'):
  return {'ms_per_step': ms, 'cpu_model': cpu, 'cpu_cores': cores, 'image_size': image_size,
          'training_config': {'model': model, 'batch_size': batch_size,
                              'fine_tune_layers': fine_tune_layers, 'precision': precision}}


def planned(train_examples=100, **training):
  run = study.PlannedRun(study.Variant((('augment', 'none'),)), 0, [])
  run.config = base(**training)
  run.train_examples = train_examples
  return run


def test_estimate_from_runs_measured_on_this_machine():
  measured = study.measured_step_times(
      [stats(ms=50), stats(ms=70), stats(ms=1000, cpu='other CPU'), stats(ms=900, cores=8),
       stats(ms=500, batch_size=128), stats(ms=400, image_size=64)], 'CPU X', 2)
  seconds, how = study.estimate(planned(model='simple_cnn', epochs=3, batch_size=32), measured)
  assert seconds == pytest.approx(3 * 4 * 60 / 1000)  # 3 epochs x ceil(100 / 32) steps x 60 ms
  assert '12 steps x 60 ms/step (2 run(s))' in how
  seconds, how = study.estimate(planned(model='simple_cnn', epochs=3, batch_size=64), measured)
  assert seconds is None and how.startswith('unknown')
  seconds, _ = study.estimate(planned(model='simple_cnn', epochs=2, batch_size=32,
                                      steps_per_epoch=10), measured)
  assert seconds == pytest.approx(2 * 10 * 60 / 1000)


def test_estimate_of_a_fine_tuned_transfer_model_counts_its_head_epochs():
  measured = study.measured_step_times(
      [stats(model='mobilenet', image_size=96, batch_size=128, ms=80, fine_tune_layers='all'),
       stats(model='mobilenet', image_size=96, batch_size=128, ms=40, fine_tune_layers='0')],
      'CPU X', 2)
  tuned = planned(1280, model='mobilenet', fine_tune_layers='all', head_epochs=2, epochs=3)
  frozen = planned(1280, model='mobilenet', fine_tune_layers='0', head_epochs=2, epochs=3)
  assert study.estimate(tuned, measured)[0] == pytest.approx((2 + 3) * 10 * 80 / 1000)
  assert study.estimate(frozen, measured)[0] == pytest.approx(3 * 10 * 40 / 1000)


def test_remaining_time_line():
  assert study.remaining_time([]) == 'nothing left to run'
  assert study.remaining_time([(None, 'unknown')]).startswith('remaining training time: unknown')
  line = study.remaining_time([(90.0, ''), (30.0, ''), (None, '')])
  assert line.startswith('remaining training time: 2 min 00 s for 2 run(s), unknown for 1 more')


def test_summary_table_names_the_failed_component():
  ok, failed = planned(), planned()
  ok.state, ok.test_accuracy, ok.seconds = 'COMPLETE', 0.625, 75
  failed.state, failed.component, failed.reason = 'FAILED', 'Trainer', 'ValueError: bad'
  table = study.summary_table([ok, failed]).splitlines()
  assert table[1].split()[:5] == ['augment=none', '0', 'COMPLETE', '62.5%', '1']
  assert table[2].split()[2] == 'FAILED' and table[2].endswith('Trainer: ValueError: bad')


# ---------------------------------------------------------------- the command line ----------

def run_study(*args, timeout=300):
  return subprocess.run([sys.executable, '-m', 'pipeline.study', *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=timeout)


def last_line(result):
  return result.stderr.strip().splitlines()[-1]


def test_cli_unknown_study_one_line(tmp_path):
  result = run_study('augmentations', '--output-dir', str(tmp_path))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: unknown study 'augmentations'; named studies: transfer_vs_scratch, augmentation, "
      'fine_tune_layers, num_classes, learning_rate, optimizer, batch_size, image_size (or '
      'make a custom study with --vary FLAG=V1,V2,...)']


def test_cli_unknown_flag():
  result = run_study('augmentation', '--colour', 'red')
  assert result.returncode == 2 and 'unrecognized arguments: --colour red' in result.stderr


def test_cli_refuses_study_and_variant_flags():
  result = run_study('augmentation', '--study', 'x')
  assert result.returncode == 2 and last_line(result).startswith(
      'error: --study and --variant are set by pipeline.study')


def test_cli_bad_value_of_one_variant_stops_before_any_run(cifar_archive, tmp_path):
  """batch_size 0 is refused by the Trainer's checks: named, before the first run starts."""
  out = tmp_path / 'out'
  result = run_study('batch_size', '--values', '32,0', '--data', cifar_archive[0],
                     '--trust-data', '--model', 'simple_cnn', '--output-dir', str(out))
  assert result.returncode == 2, result.stderr
  assert last_line(result).startswith('error: variant batch_size=0: ')
  assert 'batch_size' in last_line(result)[len('error: variant batch_size=0: '):]
  assert not (out / 'metadata.sqlite').exists() and not (out / 'pipeline_root').exists()
  assert '===' not in result.stdout  # no run started
