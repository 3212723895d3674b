"""`python -m pipeline.study` end to end on generated data, read back from ML Metadata directly.

One module fixture runs, in one output dir: a two-variant, two-seed study (simple_cnn, one epoch
of two steps); the same command again; its --dry-run with a third variant; a study whose two
variants fail, one in its Trainer and one in ExampleGen, before the Trainer records the study tag
(their output folders are made impossible to create); and the report on the store.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from base import constants

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY, VARIANTS, SEEDS = 'augmentation', ('augment=none', 'augment=strong'), (0, 1)
# The first reuses the data components' outputs and fails in its Trainer; the second's new eval
# split makes ExampleGen run again, and fail (one study, two invocations).
FAILING_STUDY, FAILING_VARIANTS = 'broken', ('eval_fraction=0.15', 'eval_fraction=0.2')
FAILS_IN = {'eval_fraction=0.15': constants.TRAINER, 'eval_fraction=0.2': constants.EXAMPLE_GEN}
DATA_COMPONENTS = (constants.EXAMPLE_GEN, constants.STATISTICS_GEN, constants.SCHEMA_GEN,
                   constants.CURATED_SCHEMA_GEN, constants.EXAMPLE_VALIDATOR,
                   constants.VALIDATION_GATE, constants.TRANSFORM)
STEPS_PER_EPOCH = 2


def run_study(*args):
  return subprocess.run([sys.executable, '-m', 'pipeline.study', *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=3600)


def executions(output_dir):
  """[(component class, state name, custom_config or {})] of every execution, with MLMD's API."""
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = os.path.join(output_dir, 'metadata.sqlite')
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(config)
  types = {t.id: t.name.rsplit('.', 1)[-1] for t in store.get_execution_types()}
  states = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
  result = []
  for e in store.get_executions():
    # TFX records a component's exec properties as the execution's custom properties.
    custom = e.custom_properties.get('custom_config')
    config = json.loads(custom.string_value or 'null') if custom is not None else None
    result.append((types[e.type_id], states[e.last_known_state], config or {}))
  return result


def trainers(output_dir, study):
  """[(variant, seed, state, training config)] of the study's Trainer executions."""
  return [(c[constants.STUDY]['variant'], c['training']['seed'], state, c['training'])
          for kind, state, c in executions(output_dir)
          if kind == constants.TRAINER and c.get(constants.STUDY, {}).get('study') == study]


def final_table(stdout, study):
  """The rows of the study's final table: {variant: [row lines]}."""
  tail = stdout[stdout.rindex(f'\nstudy {study}:\n'):].splitlines()[3:]
  rows = {}
  for line in tail:
    fields = line.split()
    if len(fields) >= 3 and '=' in fields[0]:
      rows.setdefault(fields[0], []).append(line)
  return rows


@pytest.fixture(scope='module')
def study_runs(cifar_archive, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('study'))
  base = ['--data', cifar_archive[0], '--trust-data', '--team-seed', '2', '--model', 'simple_cnn',
          '--epochs', '1', '--steps-per-epoch', str(STEPS_PER_EPOCH), '--batch-size', '32',
          '--schedule', 'constant', '--tta', 'none', '--output-dir', out]
  result = {'out': out}
  result['first'] = run_study(STUDY, '--values', ','.join(v.split('=')[1] for v in VARIANTS),
                              '--seeds', str(len(SEEDS)), *base)
  result['trainers_after_first'] = len(trainers(out, STUDY))
  result['again'] = run_study(STUDY, '--values', 'none,strong', '--seeds', '2', *base)
  result['trainers_after_again'] = len(trainers(out, STUDY))
  result['dry_run'] = run_study(STUDY, '--values', 'none,strong,basic', '--seeds', '2',
                                '--dry-run', *base)
  result['trainers_after_dry_run'] = len(trainers(out, STUDY))

  # The next study's variants fail inside a component: TFX cannot create its output folder under
  # a plain file. One invocation per variant: a blocked folder also hides the cached outputs in it
  # (a cache miss), so ExampleGen is blocked only for the variant that must fail there. (Moved back
  # afterwards for the report.)
  for key, variant, component, folder in (
      ('failing', FAILING_VARIANTS[0], constants.TRAINER, 'model_run'),
      ('failing_early', FAILING_VARIANTS[1], constants.EXAMPLE_GEN, 'examples')):
    path = os.path.join(out, 'pipeline_root', component, folder)
    os.rename(path, path + '.moved')
    with open(path, 'w') as f:
      f.write('not a folder')
    try:
      result[key] = run_study(FAILING_STUDY, '--vary', variant.replace('_', '-'), *base)
    finally:
      os.remove(path)
      os.rename(path + '.moved', path)

  report_dir = os.path.join(out, 'report')
  result['report'] = subprocess.run(
      [sys.executable, '-m', 'pipeline.report', '--output-dir', out, '--report-dir', report_dir],
      capture_output=True, text=True, cwd=ROOT, timeout=1200)
  result['report_dir'] = report_dir
  return result


def test_every_variant_and_seed_recorded_in_ml_metadata(study_runs):
  first = study_runs['first']
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  recorded = trainers(study_runs['out'], STUDY)
  assert sorted((v, s, state) for v, s, state, _ in recorded) == sorted(
      (v, s, 'COMPLETE') for v in VARIANTS for s in SEEDS)
  for variant, seed, _, training in recorded:
    assert f'augment={training["augment"]}' == variant  # the variant is what was trained
  rows = final_table(first.stdout, STUDY)
  assert set(rows) == set(VARIANTS) and all(len(r) == len(SEEDS) for r in rows.values())
  assert all(' COMPLETE ' in line and '%' in line for r in rows.values() for line in r)


def test_data_components_ran_once_across_the_studies(study_runs):
  """Four runs, then a second study: ExampleGen ... Transform each executed once, then cached
  (and ExampleGen once more, failing, for the failing study's new eval split)."""
  assert study_runs['first'].returncode == 0
  found = executions(study_runs['out'])
  for component in DATA_COMPONENTS:
    states = [state for kind, state, _ in found if kind == component]
    assert states.count('COMPLETE') == 1, f'{component}: {states}'
    failed = 1 if component == constants.EXAMPLE_GEN else 0
    assert states.count('FAILED') == failed, f'{component}: {states}'
    assert len(states) == len(VARIANTS) * len(SEEDS) + 1 + failed, states


def test_second_invocation_runs_no_trainer(study_runs):
  again = study_runs['again']
  assert again.returncode == 0, again.stderr[-3000:]
  assert study_runs['trainers_after_again'] == study_runs['trainers_after_first'] == 4
  assert '4 already done, 0 to run' in again.stdout
  assert '===' not in again.stdout  # no local_runner started


def test_dry_run_lists_done_runs_and_estimates_from_measured_steps(study_runs):
  dry = study_runs['dry_run']
  assert dry.returncode == 0, dry.stderr[-3000:]
  assert study_runs['trainers_after_dry_run'] == study_runs['trainers_after_first']
  assert '4 already done, 2 to run' in dry.stdout and '===' not in dry.stdout
  lines = dry.stdout.splitlines()
  done = [l for l in lines if l.split()[:1] and l.split()[0] in VARIANTS]
  assert len(done) == 4 and all(l.split()[2] == 'done' for l in done)
  # The new variant's estimate: 1 epoch x 2 steps x the mean ms/step of the four runs, read here
  # from their training_stats.json.
  measured = []
  for path in glob.glob(os.path.join(study_runs['out'], 'pipeline_root', constants.TRAINER,
                                     'model', '*', constants.TRAINING_STATS_FILE)):
    with open(path) as f:  # beside each model (another copy is inside its SavedModel)
      measured.append(json.load(f)['ms_per_step'])
  assert len(measured) == 4
  todo = [l for l in lines if l.split()[:1] == ['augment=basic']]
  assert len(todo) == 2
  expected = f'{STEPS_PER_EPOCH} steps x {sum(measured) / 4:.0f} ms/step (4 run(s))'
  assert all(' to run ' in l and expected in l for l in todo), todo
  assert any(l.startswith('remaining training time: ') and 'for 2 run(s)' in l for l in lines)


def test_failed_variants_reported_and_study_exits_non_zero(study_runs):
  for key, variant in (('failing', FAILING_VARIANTS[0]), ('failing_early', FAILING_VARIANTS[1])):
    failing = study_runs[key]
    assert failing.returncode == 1, failing.stdout[-3000:] + failing.stderr[-3000:]
    rows = final_table(failing.stdout, FAILING_STUDY)
    assert set(rows) == {variant}
    (line,) = rows[variant]
    assert line.split()[2] == 'FAILED'
    # TFX's own file layer words it 'is not a directory' (FailedPreconditionError).
    assert re.search(f' {FAILS_IN[variant]}: .*not a directory', line, re.IGNORECASE), line
    assert '1 of 1 runs failed' in failing.stderr
  recorded = trainers(study_runs['out'], FAILING_STUDY)
  assert sorted((v, s, state) for v, s, state, _ in recorded) == [
      ('eval_fraction=0.15', 0, 'FAILED')]


def test_run_failed_before_its_trainer_reported_as_its_variant(study_runs):
  """The ExampleGen failure has no study tag in ML Metadata; the report shows it as the failed
  run of its variant and seed (from the study's ledger), not as a run of no study."""
  from tests.report_checks import markdown_tables, read_runs, study_sections
  untagged = [r for r in read_runs(study_runs['out']) if not r['study']]
  assert [r['state'] for r in untagged] == ['FAILED']  # read from ML Metadata directly
  run_id = untagged[0]['run_id']
  with open(os.path.join(study_runs['report_dir'], 'report.md')) as f:
    markdown = f.read()
  tables = markdown_tables(study_sections(markdown)[FAILING_STUDY])
  (row,) = [r for r in tables['Runs that do not count'] if r['run'] == run_id]
  assert (row['variant'], row['seed'], row['state']) == ('eval_fraction=0.2', '0', 'FAILED')
  assert row['why it does not count'].startswith(f'failed in {constants.EXAMPLE_GEN}')
  (variant,) = [r for r in tables['Variants'] if r['variant'] == 'eval_fraction=0.2']
  assert variant['test accuracy (%)'] == 'failed'
  assert 'of no study' not in markdown


def test_report_tells_the_truth_about_the_study(study_runs):
  from tests.report_checks import check_report
  report = study_runs['report']
  assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
  check_report(study_runs['out'], study_runs['report_dir'])
