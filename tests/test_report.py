"""`pipeline.report` on made-up run records: statistics against numbers worked out by hand here,
the table cells, the summary's wording, failed runs, the written files (PNGs not blank, HTML self-
contained), and the command line's errors."""
import math
import os
import subprocess
import sys

import pytest
from scipy import stats as scipy_stats

from pipeline import report
from pipeline.evaluation import ACCURACY
from tests import report_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('apple', 'bee', 'cloud')


def make_stats(train_acc=0.9, val_acc=0.8, ms=20.0, epoch_times=(3.0, 2.0), total=5.5,
               params=(1000, 1064)):
  return {
      'epochs': len(epoch_times), 'batch_size': 32, 'epoch_time_sec': list(epoch_times),
      'train_loss': [1.5, 1.0][:len(epoch_times)], 'val_loss': [1.6, 1.2][:len(epoch_times)],
      'train_accuracy': [0.5, train_acc][:len(epoch_times)],
      'val_accuracy': [0.4, val_acc][:len(epoch_times)],
      'ms_per_step': ms, 'total_training_time_sec': total, 'trainable_params': params[0],
      'total_params': params[1], 'precision': 'float32', 'device_type': 'CPU',
      'device_name': 'Test CPU', 'cpu_cores': 2}


def record(variant='augment=none', seed=0, accuracy=0.8, top5=1.0, state='COMPLETE',
           study='s', per_class=(0.9, 0.8, 0.7), run_id=None, **stats):
  failed = state in ('FAILED', 'CANCELED')
  return report.RunRecord(
      run_id=run_id or f'run-{variant}-{seed}', study=study, variant=variant, seed=seed,
      state=state, failed=['Trainer'] if failed else [], model='simple_cnn',
      test_accuracy=None if failed else accuracy, top5_accuracy=None if failed else top5,
      per_class=[] if failed else [
          {'label': i, 'class': c, ACCURACY: a, 'example_count': 10.0}
          for i, (c, a) in enumerate(zip(CLASSES, per_class))],
      confusion=None if failed else [[9, 1, 0], [1, 8, 1], [2, 1, 7]],
      stats=None if failed else make_stats(**stats))


# ---------------------------------------------------------------- statistics ----------------

def test_mean_and_sample_std_by_hand():
  spread = report.Spread([0.80, 0.82, 0.84])
  assert spread.mean == pytest.approx(0.82)
  # deviations -0.02, 0, 0.02: squares sum to 0.0008, over n - 1 = 2: variance 0.0004.
  assert spread.std == pytest.approx(0.02)
  assert report.Spread([0.5]).std is None


def test_welch_t_test_with_three_seeds_matches_the_formula():
  a, b = [0.80, 0.82, 0.84], [0.70, 0.71, 0.75]
  # By hand: means 0.82 and 0.72; variances 0.0004 and 0.0007 (squares 0.0004+0.0001+0.0009
  # over 2); Welch's t = 0.1 / sqrt(0.0004/3 + 0.0007/3); Welch-Satterthwaite degrees of freedom.
  va, vb = 0.0004 / 3, 0.0007 / 3
  t = 0.1 / math.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
  assert t == pytest.approx(5.2223, abs=1e-4) and df == pytest.approx(3.7231, abs=1e-4)
  p_value = 2 * scipy_stats.t.sf(t, df)
  comparison = report.compare(a, b)
  assert comparison.test == 'welch'
  assert comparison.difference == pytest.approx(0.10)
  assert comparison.p_value == pytest.approx(p_value, rel=1e-9)
  assert p_value < 0.05 and comparison.significant is True


def test_welch_not_significant_when_the_seeds_overlap():
  comparison = report.compare([0.80, 0.84, 0.76], [0.79, 0.83, 0.77])
  assert comparison.test == 'welch' and comparison.significant is False
  assert comparison.p_value > 0.5


def test_two_seeds_compare_against_the_sum_of_the_standard_deviations():
  # std of [0.80, 0.84] = 0.04 / sqrt(2) = 0.028284; of [0.78, 0.80] = 0.014142: spread 0.042426.
  within = report.compare([0.80, 0.84], [0.78, 0.80])
  assert within.test == 'spread' and within.difference == pytest.approx(0.03)
  assert within.spread == pytest.approx(0.06 / math.sqrt(2)) and within.significant is False
  beyond = report.compare([0.80, 0.84], [0.70, 0.72])
  assert beyond.significant is True and beyond.difference == pytest.approx(0.11)


def test_one_seed_has_no_spread():
  comparison = report.compare([0.9], [0.8])
  assert comparison.test == 'none' and comparison.significant is None


# ---------------------------------------------------------------- variants and axes ---------

def test_variant_labels_parse_and_choose_the_axis():
  assert report.parse_variant('augment=strong,dropout=0.3') == {'augment': 'strong',
                                                                'dropout': '0.3'}
  lr = report.varied_axis(['learning_rate=0.1', 'learning_rate=1e-3'])
  assert lr.numeric and lr.log and lr.positions == {'learning_rate=0.1': 0.1,
                                                    'learning_rate=1e-3': 0.001}
  dropout = report.varied_axis(['dropout=0.2', 'dropout=0.5'])
  assert dropout.numeric and not dropout.log and dropout.name == 'dropout'
  augment = report.varied_axis(['augment=none', 'augment=strong'])
  assert not augment.numeric and augment.positions == {'augment=none': 0, 'augment=strong': 1}
  mixed = report.varied_axis(['augment=none,dropout=0.2', 'augment=strong,dropout=0.5'])
  assert not mixed.numeric and mixed.name == 'augment, dropout'


def test_numeric_variants_are_ordered_by_value():
  study = report.group_study('lr', [record('learning_rate=0.1'), record('learning_rate=0.001'),
                                    record('learning_rate=0.01')])
  assert [v.variant for v in study.variants] == [
      'learning_rate=0.001', 'learning_rate=0.01', 'learning_rate=0.1']


# ---------------------------------------------------------------- the table -----------------

def two_variant_study():
  return report.group_study('s', [
      record('augment=none', 0, accuracy=0.70, top5=0.95, ms=20.0, total=5.0,
             epoch_times=(3.0, 2.0), train_acc=0.9, val_acc=0.6, per_class=(0.9, 0.6, 0.6)),
      record('augment=none', 1, accuracy=0.72, top5=0.97, ms=22.0, total=7.0,
             epoch_times=(4.0, 3.0), train_acc=0.8, val_acc=0.6, per_class=(0.7, 0.8, 0.6)),
      record('augment=basic', 0, accuracy=0.80, top5=1.0, ms=30.0, total=9.0,
             epoch_times=(5.0, 4.0), train_acc=0.85, val_acc=0.75, per_class=(0.8, 0.9, 0.7)),
      record('augment=basic', 1, accuracy=0.84, top5=1.0, ms=30.0, total=11.0,
             epoch_times=(6.0, 5.0), train_acc=0.85, val_acc=0.80, per_class=(0.8, 0.95, 0.7)),
  ])


def test_table_cells_are_the_runs_numbers():
  rows = {r[0]: dict(zip(report.TABLE_HEADERS, r)) for r in report.study_table(two_variant_study())}
  none, basic = rows['augment=none'], rows['augment=basic']
  # augment=none: accuracy 0.70, 0.72 -> 71.00 ± 1.41 (0.02 / sqrt 2 = 0.014142).
  assert none['test accuracy (%)'] == '71.00 ± 1.41'
  assert none['top-5 accuracy (%)'] == '96.00 ± 1.41'
  assert none['seeds'] == '0, 1'
  assert none['ms/step'] == '21.0 ± 1.4'
  # Epoch times after the first: 2.0 and 3.0 -> 2.50 ± 0.71.
  assert none['epoch time (s)'] == '2.50 ± 0.71'
  assert none['training time (s)'] == '6.0 ± 1.4'
  assert none['epochs'] == '2'
  # Gaps 0.3 and 0.2 -> 25.00 ± 7.07 points.
  assert none['overfitting gap (points)'] == '25.00 ± 7.07'
  assert none['trainable / total params'] == '1,000 / 1,064'
  # Class means: apple 0.8, bee 0.7, cloud 0.6.
  assert none['best class (%)'] == 'apple 80.0' and none['worst class (%)'] == 'cloud 60.0'
  assert none['runs'] == 'run-augment=none-0, run-augment=none-1'
  assert basic['test accuracy (%)'] == '82.00 ± 2.83' and basic['vs best'] == 'best'
  assert basic['best class (%)'] == 'bee 92.5'
  # -11 points against a spread of 1.41 + 2.83 = 4.24: beyond it.
  assert none['vs best'] == '-11.00 points, beyond the spread (4.24)'


def test_a_rerun_of_a_seed_counts_once_and_is_listed():
  study = report.group_study('s', [record(seed=0, accuracy=0.5, run_id='old'),
                                   record(seed=0, accuracy=0.6, run_id='new')])
  variant = study.variants[0]
  assert [r.run_id for r in variant.runs] == ['new']
  assert variant.measurements['test_accuracy'].values == [0.6]
  assert [(r.run_id, reason) for r, reason in study.not_counted] == [
      ('old', 'repeat of seed 0: run new counts')]


def test_failed_and_running_runs_are_listed_never_dropped():
  records = [record('augment=none', 0), record('augment=strong', 0, state='FAILED'),
             record('augment=none', 1, state='RUNNING')]
  records[1].failure_reason = 'ValueError: boom'
  study = report.group_study('s', records)
  rows = {r[0]: dict(zip(report.TABLE_HEADERS, r)) for r in report.study_table(study)}
  assert rows['augment=strong']['test accuracy (%)'] == 'failed'
  running = report.group_study('s', [record('augment=strong', 0, state='RUNNING')])
  assert report.study_table(running)[0][2] == 'running'
  assert 'failed in Trainer: ValueError: boom' in rows['augment=strong']['runs']
  unfinished = report.unfinished_table(study)
  assert ['run-augment=strong-0', 'augment=strong', '0', 'FAILED',
          'failed in Trainer: ValueError: boom'] in unfinished
  assert ['run-augment=none-1', 'augment=none', '1', 'RUNNING',
          'still running (or its runner was killed)'] in unfinished
  assert rows['augment=none']['runs'] == 'run-augment=none-0'


def test_the_gap_is_taken_at_the_last_epoch_with_both_accuracies():
  # The last epoch logged no validation accuracy: the gap is epoch 2's, 0.7 - 0.5.
  assert report.final_gap([0.5, 0.7, 0.9], [0.4, 0.5, None]) == pytest.approx(0.2)
  assert report.final_gap([0.5], [None]) is None


def test_a_finished_run_without_evaluation_does_not_count():
  broken = record()
  broken.test_accuracy, broken.absent = None, 'evaluation: Evaluator FAILED in this run'
  assert report.why_not_counted(broken) == 'evaluation: Evaluator FAILED in this run'


# ---------------------------------------------------------------- summary wording -----------

def test_summary_with_two_seeds_beyond_the_spread():
  text = ' '.join(report.study_summary(two_variant_study()))
  assert 'Best variant: augment=basic, test accuracy 82.00 ± 2.83 % over 2 seeds' in text
  assert '11.00 points above the next, augment=none (71.00 ± 1.41 %, 2 seeds)' in text
  assert 'exceeds the spread' in text and 'not a finding' not in text
  assert 'Fastest to train: augment=none (6.0 s); the best variant takes 10.0 s.' in text


def test_summary_within_the_spread_is_not_a_finding():
  study = report.group_study('s', [
      record('a=1', 0, accuracy=0.80), record('a=1', 1, accuracy=0.84),
      record('a=2', 0, accuracy=0.81), record('a=2', 1, accuracy=0.82)])
  text = ' '.join(report.study_summary(study))
  assert 'is within the spread' in text and 'not a finding' in text


def test_summary_with_three_seeds_shows_welchs_p():
  values = {'x=1': (0.80, 0.82, 0.84), 'x=2': (0.70, 0.71, 0.75)}
  study = report.group_study('s', [record(v, i, accuracy=a) for v, accs in values.items()
                                   for i, a in enumerate(accs)])
  text = ' '.join(report.study_summary(study))
  p_value = report.compare(values['x=1'], values['x=2']).p_value
  assert f"Welch's t-test gives p = {p_value:.2g}: the difference is significant" in text


def test_summary_with_one_seed_says_there_is_no_spread():
  study = report.group_study('s', [record('a=1', 0, accuracy=0.8), record('a=2', 0, accuracy=0.7)])
  text = ' '.join(report.study_summary(study))
  assert 'one seed per variant there is no spread' in text and 'not a finding' in text


def test_summary_of_a_study_that_never_finished():
  study = report.group_study('s', [record(state='FAILED')])
  assert report.study_summary(study)[0] == 'No run of study s finished: nothing to compare.'


# ---------------------------------------------------------------- written files -------------

def test_written_report_is_self_contained_with_plots(tmp_path):
  study = two_variant_study()
  records = [r for v in study.variants for r in v.runs] + [
      record('augment=strong', 0, state='FAILED'), record('learning_rate=0.01', 0, study='lr'),
      record('learning_rate=0.1', 0, study='lr', accuracy=0.5)]
  written = report.write_report(records, str(tmp_path), 'test records')
  markdown = (tmp_path / report.REPORT_MD).read_text()
  page = (tmp_path / report.REPORT_HTML).read_text()
  images = report_checks.markdown_images(markdown)
  # Per study: the accuracy plot, one learning-curve plot per finished variant, per-class and
  # confusion of the best run; then accuracy against time.
  assert len(images) == (1 + 2 + 2) + (1 + 2 + 2) + 1
  assert sorted(os.path.join(str(tmp_path), i) for i in images) == sorted(written[2:])
  for image in images:
    assert not os.path.isabs(image)
    assert report_checks.png_problem(os.path.join(str(tmp_path), image)) is None
  assert report_checks.external_references(page) == []
  assert page.count('src="data:image/png;base64,') == len(images)
  sections = report_checks.study_sections(markdown)
  assert set(sections) == {'s', 'lr'}
  failed = report_checks.markdown_tables(sections['s'])['Runs that do not count']
  assert failed == [{'run': 'run-augment=strong-0', 'variant': 'augment=strong', 'seed': '0',
                     'state': 'FAILED', 'why it does not count': 'failed in Trainer'}]
  assert 'Colab T4 (ms/step)' in markdown and 'Test CPU' in markdown


def test_checks_catch_external_references_and_blank_images(tmp_path):
  """The checks the report is held to do fail on what they must catch."""
  assert report_checks.external_references(
      '<img src="https://x/y.png"><link rel="stylesheet" href="s.css"><a href="#top">'
      '<style>@import "f.css"; div { background: url(a.png) }</style><script src="j.js">')[:2] == [
          'https://x/y.png', 's.css']
  assert len(report_checks.external_references('<script src="j.js"></script>')) == 2
  assert report_checks.external_references('<a href="#s">s</a><img src="data:image/png;base64,AA">'
                                           ) == []
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new('RGB', (50, 50), 'white').save(tmp_path / 'blank.png')
  assert 'blank' in report_checks.png_problem(str(tmp_path / 'blank.png'))
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  assert 'does not decode' in report_checks.png_problem(str(tmp_path / 'broken.png'))


# ---------------------------------------------------------------- command line --------------

def run_report(*args):
  return subprocess.run([sys.executable, '-m', 'pipeline.report', *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=300,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


def test_an_empty_store_is_one_line_and_exit_2(tmp_path):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(tmp_path / 'metadata.sqlite')
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
  metadata_store.MetadataStore(config)  # creates the schema, no runs
  result = run_report('--output-dir', str(tmp_path), '--report-dir', str(tmp_path / 'r'))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'error: no pipeline runs in {tmp_path}/metadata.sqlite: nothing to report (run python -m '
      'pipeline.study first)']
  assert not (tmp_path / 'r' / report.REPORT_MD).exists()


def test_a_missing_store_is_one_line_and_exit_2(tmp_path):
  result = run_report('--output-dir', str(tmp_path / 'nothing'))
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert result.stderr.startswith('error: no ML Metadata at')


def test_help_lists_every_flag():
  text = report.build_parser().format_help()
  for flag in ('--output-dir', '--study', '--report-dir'):
    assert flag in text


def test_top_k_accuracy_with_k_classes_or_fewer_is_called_meaningless():
  """3 classes: every label is among any 5 predictions, so top-5 accuracy is 100% whatever the
  model; the note says so. With more than 5 classes there is nothing to say."""
  three = report.group_study('s', [record('augment=none', 0), record('augment=basic', 0)])
  assert report.top_k_note(three) == (' With 3 classes every label is among the top 5 '
                                      'predictions: top-5 accuracy is 100% by definition.')
  six = report.group_study('s', [record('augment=none', 0)])
  six.variants[0].runs[0].per_class = [{'class': f'c{i}', ACCURACY: 0.5} for i in range(6)]
  assert report.top_k_note(six) == ''


def test_learning_curves_join_the_epochs_that_logged_validation(tmp_path):
  """An epoch without validation (None in training_stats.json) leaves a gap in the data, not in
  the line: the validation line is drawn through the epochs that have a value."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot
  run = record('augment=none', 0)
  run.stats['val_accuracy'] = [0.4, None, 0.6]
  run.stats['train_accuracy'] = [0.5, 0.6, 0.7]
  variant = report.group_study('s', [run]).variants[0]
  captured = []
  original = pyplot.Axes.plot

  def spy(ax, xs, ys, **kwargs):
    captured.append((kwargs.get('color'), list(xs), list(ys)))
    return original(ax, xs, ys, **kwargs)

  pyplot.Axes.plot = spy
  try:
    report.plot_learning_curves(variant, str(tmp_path / 'curves.png'))
  finally:
    pyplot.Axes.plot = original
  assert ('orange', [1, 3], [0.4, 0.6]) in captured
  assert ('blue', [1, 2, 3], [0.5, 0.6, 0.7]) in captured
