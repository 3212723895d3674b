"""The report a team hands in: every study's measured tables, plots and a summary written from the
numbers, as `report.md` (readable on GitHub, PNGs beside it) and one self-contained `report.html`
(images inlined, inline CSS only: it opens offline and can be e-mailed).

    python -m pipeline.report [--output-dir DIR] [--study NAME ...] [--report-dir DIR]

Runs are read through `pipeline.runs` (ML Metadata, each run's `training_stats.json` and the
Evaluator's TFMA result) into plain `RunRecord`s; everything after that is pure functions on
records (grouping by study and variant, mean ± std over seeds, Welch's t-test, the summary
sentences, the table rows), then one document model (`Block`s) rendered twice, to Markdown and to
HTML. Runs that failed or are still running are listed, never dropped.
"""
import argparse
import base64
import dataclasses
import html
import math
import os
import re
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from base import constants
from base.configs import RunnerConfig
from base.course import COURSE_BATCH_SIZE, COURSE_MS_PER_STEP, COURSE_NUM_CLASSES
from base.errors import UserError
from pipeline import cli, runs
from pipeline.evaluation import ACCURACY, TOP_K, TOP_K_ACCURACY

DEFAULT_REPORT_DIR = 'report'
REPORT_MD, REPORT_HTML, PLOTS_DIR = 'report.md', 'report.html', 'plots'
# Run states whose results count (`runs.run_state`); a CACHED run's artifacts are real ones too.
DONE_STATES = ('COMPLETE', 'CACHED')
MIN_SEEDS_FOR_TEST = 3  # Welch's t-test needs this many seeds on each side
SIGNIFICANCE = 0.05  # p below this: the difference is reported as a finding
TABLE_HEADERS = ('variant', 'seeds', 'test accuracy (%)', 'top-5 accuracy (%)', 'vs best',
                 'best class (%)', 'worst class (%)', 'trainable / total params', 'ms/step',
                 'epoch time (s)', 'training time (s)', 'epochs', 'overfitting gap (points)',
                 'runs')
UNFINISHED_HEADERS = ('run', 'variant', 'seed', 'state', 'why it does not count')


# ---------------------------------------------------------------- records -------------------

@dataclasses.dataclass
class RunRecord:
  """One run of a study, as the report needs it (tests build these directly).

  `per_class` rows are `analysis.per_class_rows` ({'class', ACCURACY, ...}, class order);
  `stats` is the run's training_stats.json; `confusion` the [true, predicted] count matrix.
  """
  run_id: str
  study: str
  variant: str
  seed: Optional[int]
  state: str
  failed: Sequence[str] = ()  # the components that failed
  failure_reason: str = ''  # the failure's last line, when TFX recorded it
  model: str = ''
  test_accuracy: Optional[float] = None
  top5_accuracy: Optional[float] = None
  per_class: Sequence[Dict[str, Any]] = ()
  confusion: Optional[List[List[float]]] = None
  stats: Optional[Dict[str, Any]] = None
  stats_path: str = ''
  eval_uri: str = ''
  absent: str = ''  # why the training or evaluation could not be read

  @property
  def class_names(self) -> List[str]:
    return [r['class'] for r in self.per_class]


def state_word(record: RunRecord) -> str:
  """'failed', 'canceled', 'running' or 'incomplete' (finished, but results unreadable)."""
  if record.state in DONE_STATES:
    return 'incomplete'
  return record.state.lower()


def why_not_counted(record: RunRecord) -> str:
  """'' for a run whose numbers count; else why not: failed, still running, unreadable results."""
  if record.state not in DONE_STATES:
    if record.state in ('FAILED', 'CANCELED'):
      where = ', '.join(record.failed)
      return (record.state.lower() + (f' in {where}' if where else '')
              + (f': {record.failure_reason}' if record.failure_reason else ''))
    return 'still running (or its runner was killed)' if record.state == 'RUNNING' else (
        record.state.lower())
  if record.stats is None or record.test_accuracy is None:
    return record.absent or 'no training statistics or evaluation recorded'
  return ''


# ---------------------------------------------------------------- statistics ----------------

@dataclasses.dataclass
class Spread:
  """Mean and sample standard deviation (n - 1) of one measurement over a variant's seeds."""
  values: List[float]

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> Optional[float]:
    return statistics.fmean(self.values) if self.values else None

  @property
  def std(self) -> Optional[float]:
    return statistics.stdev(self.values) if self.n >= 2 else None


@dataclasses.dataclass
class Comparison:
  """A variant's test accuracy against another's: the difference of means and whether it is a
  finding. `test` is 'welch' (3+ seeds per side: p from Welch's t-test), 'spread' (2 seeds: the
  difference against the sum of the two standard deviations) or 'none' (one seed: no spread)."""
  difference: float
  test: str
  p_value: Optional[float] = None
  spread: Optional[float] = None
  significant: Optional[bool] = None


def compare(values: Sequence[float], other: Sequence[float]) -> Comparison:
  """`values` against `other` (mean difference, positive when `values` is higher).

  With 3+ values on each side, Welch's t-test (unequal variances); the difference is a finding
  when p < SIGNIFICANCE. With 2, it is one when it exceeds the spread: the sum of the two sample
  standard deviations (the ±1 std error bars do not overlap). With 1, nothing can be said.
  """
  a, b = Spread(list(values)), Spread(list(other))
  difference = a.mean - b.mean
  if min(a.n, b.n) >= MIN_SEEDS_FOR_TEST:
    from scipy import stats  # pylint: disable=g-import-not-at-top
    p_value = float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)
    if not math.isnan(p_value):  # nan: both sides without any variance
      return Comparison(difference, 'welch', p_value=p_value,
                        significant=p_value < SIGNIFICANCE)
  if min(a.n, b.n) >= 2:
    spread = a.std + b.std
    return Comparison(difference, 'spread', spread=spread, significant=abs(difference) > spread)
  return Comparison(difference, 'none')


# ---------------------------------------------------------------- per-run measurements ------

def final_gap(train: Optional[Sequence[Optional[float]]],
              val: Optional[Sequence[Optional[float]]]) -> Optional[float]:
  """Train minus validation accuracy at the last epoch that logged both (None if none did)."""
  pairs = [(t, v) for t, v in zip(train or [], val or []) if t is not None and v is not None]
  return pairs[-1][0] - pairs[-1][1] if pairs else None


def run_measurements(record: RunRecord) -> Dict[str, Optional[float]]:
  """The numbers of one finished run that the study table averages over seeds.

  Epoch time is the mean over the epochs after the first (the first also traces and compiles the
  model: 15 s against 0.4 s for a tiny simple_cnn run), or the only epoch's; the overfitting gap is
  the train accuracy minus the validation accuracy of the last epoch that logged both.
  """
  stats = record.stats or {}
  epoch_times = (stats.get('epoch_time_sec') or [])
  epoch_times = epoch_times[1:] or epoch_times
  return {
      'test_accuracy': record.test_accuracy,
      'top5_accuracy': record.top5_accuracy,
      'trainable_params': stats.get('trainable_params'),
      'total_params': stats.get('total_params'),
      'ms_per_step': stats.get('ms_per_step'),
      'epoch_time_sec': statistics.fmean(epoch_times) if epoch_times else None,
      'total_training_time_sec': stats.get('total_training_time_sec'),
      'epochs': stats.get('epochs'),
      'overfitting_gap': final_gap(stats.get('train_accuracy'), stats.get(constants.VAL_ACCURACY)),
  }


# ---------------------------------------------------------------- grouping ------------------

def parse_variant(label: str) -> Dict[str, str]:
  """'augment=strong,dropout=0.3' -> {'augment': 'strong', 'dropout': '0.3'}; a label without
  '=' is its own value under the key ''."""
  result = {}
  for part in (p.strip() for p in label.split(',') if p.strip()):
    key, sep, value = part.partition('=')
    result[key.strip() if sep else ''] = (value if sep else key).strip()
  return result


def _number(text: str) -> Optional[float]:
  try:
    value = float(text)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


@dataclasses.dataclass
class Axis:
  """What a study varies: one key with numeric values (`numeric`, `log` for learning rates), or
  categories (the labels themselves)."""
  name: str
  numeric: bool
  log: bool
  positions: Dict[str, float]  # variant label -> x value (numeric) or index (categorical)


def varied_axis(labels: Sequence[str]) -> Axis:
  """The x-axis for a study's variants, in plotting order: numeric when every label sets the same
  single key to a number (log scale for a learning rate, all positive), categorical otherwise."""
  parsed = [parse_variant(label) for label in labels]
  keys = {tuple(p) for p in parsed}
  if len(keys) == 1 and len(next(iter(keys))) == 1:
    key = next(iter(keys))[0]
    numbers = [_number(p[key]) for p in parsed]
    if all(n is not None for n in numbers):
      log = 'learning_rate' in key and all(n > 0 for n in numbers)
      return Axis(key or 'variant', True, log, dict(zip(labels, numbers)))
  name = ', '.join(sorted(k for k in set().union(*parsed) if k)) if parsed else ''
  return Axis(name or 'variant', False, False, {label: i for i, label in enumerate(labels)})


@dataclasses.dataclass
class VariantResult:
  """One variant of a study: the runs that count (one per seed) and their measurements."""
  variant: str
  runs: List[RunRecord]
  measurements: Dict[str, Spread]
  failed: List[RunRecord]  # this variant's runs that do not count

  @property
  def seeds(self) -> List[Optional[int]]:
    return [r.seed for r in self.runs]


@dataclasses.dataclass
class StudyResult:
  name: str
  axis: Axis
  variants: List[VariantResult]  # in the axis' order
  not_counted: List[Tuple[RunRecord, str]]  # every run of the study whose numbers do not count

  def finished(self) -> List[VariantResult]:
    return [v for v in self.variants if v.runs]

  def best(self) -> Optional[VariantResult]:
    finished = self.finished()
    return max(finished, key=lambda v: v.measurements['test_accuracy'].mean) if finished else None

  def best_run(self) -> Optional[RunRecord]:
    runs = [r for v in self.finished() for r in v.runs]
    return max(runs, key=lambda r: r.test_accuracy) if runs else None


def _ordered_labels(records: Sequence[RunRecord]) -> List[str]:
  labels = list(dict.fromkeys(r.variant for r in records))
  axis = varied_axis(labels)
  return sorted(labels, key=lambda label: axis.positions[label]) if axis.numeric else labels


def group_study(name: str, records: Sequence[RunRecord]) -> StudyResult:
  """A study's runs (oldest first) grouped by variant. Of several finished runs with the same
  variant and seed (a rerun), the newest counts and the others are listed as repeats."""
  labels = _ordered_labels(records)
  variants, not_counted = [], []
  for label in labels:
    mine = [r for r in records if r.variant == label]
    counted: Dict[Optional[int], RunRecord] = {}
    failed = []
    for record in mine:
      reason = why_not_counted(record)
      if reason:
        failed.append(record)
        not_counted.append((record, reason))
        continue
      if record.seed in counted:
        older = counted[record.seed]
        not_counted.append((older, f'repeat of seed {record.seed}: run {record.run_id} counts'))
      counted[record.seed] = record
    runs = list(counted.values())
    per_run = [run_measurements(r) for r in runs]
    measurements = {key: Spread([m[key] for m in per_run if m[key] is not None])
                    for key in (per_run[0] if per_run else {})}
    variants.append(VariantResult(label, runs, measurements, failed))
  return StudyResult(name, varied_axis(labels), variants, not_counted)


def group_studies(records: Sequence[RunRecord]) -> List[StudyResult]:
  """Every study among the records, in order of first appearance."""
  names = list(dict.fromkeys(r.study for r in records))
  return [group_study(n, [r for r in records if r.study == n]) for n in names]


def class_accuracies(runs: Sequence[RunRecord]) -> Dict[str, float]:
  """Per-class test accuracy averaged over runs (classes without test examples left out)."""
  values: Dict[str, List[float]] = {}
  for run in runs:
    for row in run.per_class:
      if row.get(ACCURACY) is not None:
        values.setdefault(row['class'], []).append(row[ACCURACY])
  return {name: statistics.fmean(v) for name, v in values.items()}


def best_and_worst_class(runs: Sequence[RunRecord]) -> Tuple[Optional[Tuple[str, float]],
                                                              Optional[Tuple[str, float]]]:
  """(class, mean accuracy) of the best and the worst class; ties go to the earlier class."""
  accuracies = class_accuracies(runs)
  if not accuracies:
    return None, None
  items = list(accuracies.items())
  return max(items, key=lambda kv: kv[1]), min(items, key=lambda kv: kv[1])


# ---------------------------------------------------------------- formatting ----------------

def format_spread(spread: Spread, scale: float = 1.0, digits: int = 2) -> str:
  """'81.23 ± 1.05' (the std only with 2+ values); '-' without values."""
  if not spread.values:
    return '-'
  text = f'{spread.mean * scale:,.{digits}f}'
  return text + (f' ± {spread.std * scale:,.{digits}f}' if spread.std is not None else '')


def format_count(spread: Spread) -> str:
  """An integer measurement (parameters, epochs): the value when every seed agrees."""
  if not spread.values:
    return '-'
  if len(set(spread.values)) == 1:
    return f'{int(spread.values[0]):,}'
  return format_spread(spread, digits=1)


def format_p(p_value: float) -> str:
  return f'{p_value:.2g}' if p_value >= 0.001 else '< 0.001'


def describe_comparison(comparison: Comparison) -> str:
  """'-1.20 points, p = 0.03' / '-0.30 points, within the spread (1.10)' / ..."""
  text = f'{comparison.difference * 100:+.2f} points'
  if comparison.test == 'welch':
    verdict = 'significant' if comparison.significant else 'not significant'
    return f'{text}, p = {format_p(comparison.p_value)} ({verdict})'
  if comparison.test == 'spread':
    verdict = 'beyond' if comparison.significant else 'within'
    return f'{text}, {verdict} the spread ({comparison.spread * 100:.2f})'
  return f'{text}, one seed: no spread'


def _class_cell(item: Optional[Tuple[str, float]]) -> str:
  return '-' if item is None else f'{item[0]} {item[1] * 100:.1f}'


def study_table(study: StudyResult) -> List[List[str]]:
  """One row per variant (TABLE_HEADERS); a variant without a finished run shows its runs'
  states ('failed', 'running', ...) instead of its accuracy, and why in the runs column."""
  best = study.best()
  rows = []
  for variant in study.variants:
    if not variant.runs:
      reasons = '; '.join(f'{r.run_id}: {why_not_counted(r)}' for r in variant.failed)
      states = ', '.join(dict.fromkeys(state_word(r) for r in variant.failed))
      rows.append([variant.variant, '0', states or '-', '-', '-', '-', '-', '-', '-', '-', '-', '-',
                   '-', reasons or '-'])
      continue
    m = variant.measurements
    if variant is best:
      versus = 'best'
    else:
      versus = describe_comparison(compare(
          m['test_accuracy'].values, best.measurements['test_accuracy'].values))
    best_class, worst_class = best_and_worst_class(variant.runs)
    seeds = ', '.join('-' if s is None else str(s) for s in variant.seeds)
    rows.append([
        variant.variant, seeds,
        format_spread(m['test_accuracy'], 100), format_spread(m['top5_accuracy'], 100), versus,
        _class_cell(best_class), _class_cell(worst_class),
        f'{format_count(m["trainable_params"])} / {format_count(m["total_params"])}',
        format_spread(m['ms_per_step'], digits=1), format_spread(m['epoch_time_sec']),
        format_spread(m['total_training_time_sec'], digits=1), format_count(m['epochs']),
        format_spread(m['overfitting_gap'], 100),
        ', '.join(r.run_id for r in variant.runs)])
  return rows


def unfinished_table(study: StudyResult) -> List[List[str]]:
  return [[r.run_id, r.variant, '-' if r.seed is None else str(r.seed), r.state, reason]
          for r, reason in study.not_counted]


def _accuracy(spread: Spread) -> str:
  return format_spread(spread, 100) + ' %'


def plural(n: int, word: str, many: str = '') -> str:
  """'1 seed', '3 seeds', '2 studies' (with `many`)."""
  return f'{n} {word if n == 1 else many or word + "s"}'


def study_summary(study: StudyResult) -> List[str]:
  """A few sentences generated from the numbers: the best variant, by how much it beats the
  runner-up and whether that exceeds the spread; the fastest variant; runs that do not count."""
  finished = study.finished()
  sentences = []
  if not finished:
    sentences.append(f'No run of study {study.name} finished: nothing to compare.')
  elif len(finished) == 1:
    only = finished[0]
    accuracy = only.measurements['test_accuracy']
    sentences.append(f'Only {only.variant} has finished runs (test accuracy {_accuracy(accuracy)}, '
                     f'{plural(accuracy.n, "seed")}): nothing to compare it with.')
  else:
    ranked = sorted(finished, key=lambda v: -v.measurements['test_accuracy'].mean)
    best, second = ranked[0], ranked[1]
    a, b = best.measurements['test_accuracy'], second.measurements['test_accuracy']
    comparison = compare(a.values, b.values)
    lead = (f'Best variant: {best.variant}, test accuracy {_accuracy(a)} over '
            f'{plural(a.n, "seed")}, {comparison.difference * 100:.2f} points above the next, '
            f'{second.variant} ({_accuracy(b)}, {plural(b.n, "seed")}).')
    if comparison.test == 'welch':
      verdict = (f"Welch's t-test gives p = {format_p(comparison.p_value)}: "
                 + ('the difference is significant (p < 0.05).' if comparison.significant else
                    'the difference is within the spread, not a finding.'))
    elif comparison.test == 'spread':
      verdict = (f'The difference {"exceeds" if comparison.significant else "is within"} the '
                 f'spread (the two standard deviations add up to {comparison.spread * 100:.2f} '
                 'points)' + ('.' if comparison.significant else ': not a finding.')
                 + f' With fewer than {MIN_SEEDS_FOR_TEST} seeds per variant there is no t-test; '
                 f'rerun the study with --seeds {MIN_SEEDS_FOR_TEST}.')
    else:
      verdict = ('With one seed per variant there is no spread to judge the difference by: not a '
                 f'finding; rerun the study with --seeds {MIN_SEEDS_FOR_TEST}.')
    sentences += [lead, verdict]
    timed = [v for v in finished if v.measurements['total_training_time_sec'].values]
    if timed:
      fastest = min(timed, key=lambda v: v.measurements['total_training_time_sec'].mean)
      best_time = best.measurements['total_training_time_sec'].mean
      sentences.append(
          f'It is also the fastest to train ({best_time:.1f} s).' if fastest is best else
          f'Fastest to train: {fastest.variant} '
          f'({fastest.measurements["total_training_time_sec"].mean:.1f} s); the best variant takes '
          f'{best_time:.1f} s.')
  if study.not_counted:
    n = len(study.not_counted)
    sentences.append(f'{plural(n, "run")} {"does" if n == 1 else "do"} not count (failed, still '
                     'running or repeated): listed below.')
  return sentences


def device_rows(records: Sequence[RunRecord]) -> List[List[str]]:
  """Each device and precision the finished runs trained on, with how many runs."""
  counts: Dict[Tuple[str, ...], int] = {}
  for record in records:
    stats = record.stats or {}
    key = (str(stats.get('device_type', '-')), str(stats.get('device_name', '-')),
           str(stats.get('cpu_cores', '-')), str(stats.get('precision', '-')))
    counts[key] = counts.get(key, 0) + 1
  return [[*key, str(n)] for key, n in counts.items()]


def course_timing_rows(records: Sequence[RunRecord]) -> List[List[str]]:
  """The course's ms/step table, one row per model, beside the ms/step of this report's runs of
  that model (median over runs, with their batch sizes and precisions: the course's figures are
  at batch COURSE_BATCH_SIZE with COURSE_NUM_CLASSES classes)."""
  rows = []
  models = list(dict.fromkeys(m for table in COURSE_MS_PER_STEP.values() for m in table))
  for model in models:
    mine = [r.stats for r in records if r.model == model and r.stats and r.stats.get('ms_per_step')]
    if mine:
      batches = sorted({str(s.get('batch_size')) for s in mine})
      precisions = sorted({str(s.get('precision')) for s in mine})
      here = (f'{statistics.median(s["ms_per_step"] for s in mine):,.1f} (batch '
              f'{"/".join(batches)}, {"/".join(precisions)}, {plural(len(mine), "run")})')
    else:
      here = 'not run'
    rows.append([model, *(str(COURSE_MS_PER_STEP[d].get(model, '-')) for d in COURSE_MS_PER_STEP),
                 here])
  return rows


# ---------------------------------------------------------------- plots ---------------------

def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)
  return path


def plot_metric_vs_variant(study: StudyResult, path: str) -> str:
  """Test accuracy (mean ± std over seeds, each seed a dot) against the varied value."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  axis = study.axis
  finished = study.finished()
  xs = [axis.positions[v.variant] for v in finished]
  means = [v.measurements['test_accuracy'].mean for v in finished]
  stds = [v.measurements['test_accuracy'].std or 0.0 for v in finished]
  ax.errorbar(xs, means, yerr=stds, fmt='o-' if axis.numeric else 'o', capsize=5,
              color='tab:blue', label='mean ± std over seeds')
  for x, variant in zip(xs, finished):
    values = variant.measurements['test_accuracy'].values
    ax.scatter([x] * len(values), values, color='tab:orange', s=14, zorder=3)
  failed = [v for v in study.variants if not v.runs]
  if axis.numeric:
    if axis.log:
      ax.set_xscale('log')
  else:
    ax.set_xticks(list(axis.positions.values()), list(axis.positions), rotation=20, ha='right')
    ax.set_xlim(-0.5, len(axis.positions) - 0.5)
  for variant in failed:  # at the bottom of the axes, at the variant's x: why it has no point
    states = ', '.join(dict.fromkeys(state_word(r) for r in variant.failed)) or 'no run'
    ax.text(axis.positions[variant.variant], 0.03, states, color='tab:red', ha='center',
            transform=ax.get_xaxis_transform())
  ax.set_xlabel(axis.name)
  ax.set_ylabel('test accuracy')
  ax.set_title(f'{study.name}: test accuracy by {axis.name}')
  ax.legend(loc='best')
  return _save(fig, path)


def plot_learning_curves(variant: VariantResult, path: str) -> str:
  """Loss and accuracy per epoch, train (blue) and validation (orange), each seed a line: the
  course notebook's `summarize_diagnostics` layout."""
  plt = _pyplot()
  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
  fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(7, 6.5))
  for i, run in enumerate(variant.runs):
    stats = run.stats or {}
    for ax, train_key, val_key in ((loss_ax, 'train_loss', 'val_loss'),
                                   (acc_ax, 'train_accuracy', constants.VAL_ACCURACY)):
      for key, color, label in ((train_key, 'blue', 'train'), (val_key, 'orange', 'validation')):
        # Only the epochs that logged the value (an epoch without validation logs None): a line
        # through the measured points, not dots broken apart by the gaps.
        points = [(epoch, v) for epoch, v in enumerate(stats.get(key) or [], start=1)
                  if v is not None and not math.isnan(v)]
        ax.plot([e for e, _ in points], [v for _, v in points], color=color, marker='.',
                alpha=0.9 if len(variant.runs) == 1 else 0.6, label=label if i == 0 else None)
  loss_ax.set_title('Cross Entropy Loss')
  acc_ax.set_title('Classification Accuracy')
  for ax in (loss_ax, acc_ax):
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc='best')
  fig.suptitle(f'{variant.variant} ({plural(len(variant.runs), "seed")})')
  return _save(fig, path)


def plot_per_class(run: RunRecord, path: str) -> str:
  from pipeline import analysis  # pylint: disable=g-import-not-at-top  (imports TFMA lazily only)
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(run.per_class) + 2), 4.5))
  analysis.plot_per_class_accuracy(ax, run.per_class, run.test_accuracy)
  ax.set_title(f'per-class test accuracy of the best run\n{run.run_id} ({run.variant}, seed '
               f'{run.seed})', fontsize=10)
  return _save(fig, path)


def plot_confusion(run: RunRecord, path: str) -> str:
  from pipeline import analysis  # pylint: disable=g-import-not-at-top
  plt = _pyplot()
  size = max(5, 0.4 * len(run.class_names) + 3)
  fig, ax = plt.subplots(figsize=(size, size))
  analysis.plot_confusion_matrix(ax, run.confusion, run.class_names)
  ax.set_title(f'confusion matrix, best run ({run.variant}, seed {run.seed})')
  return _save(fig, path)


def plot_accuracy_vs_time(studies: Sequence[StudyResult], path: str) -> str:
  """Test accuracy against total training time, every counted run, one colour per variant."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8, 5))
  markers = 'osD^vP*X'
  for s, study in enumerate(studies):
    for variant in study.finished():
      runs = [r for r in variant.runs if (r.stats or {}).get('total_training_time_sec') is not None]
      ax.scatter([r.stats['total_training_time_sec'] for r in runs],
                 [r.test_accuracy for r in runs], marker=markers[s % len(markers)], s=40,
                 label=f'{study.name}: {variant.variant}')
  ax.set_xlabel('total training time (s)')
  ax.set_ylabel('test accuracy')
  ax.set_title('accuracy against training time, every run')
  ax.legend(loc='best', fontsize=8)
  return _save(fig, path)


# ---------------------------------------------------------------- the document --------------

@dataclasses.dataclass
class Block:
  """One piece of the document: kind 'h1'/'h2'/'h3' (text), 'p' (text), 'table' (headers, rows)
  or 'image' (text: the PNG's path relative to the report dir; alt: its description)."""
  kind: str
  text: str = ''
  headers: Sequence[str] = ()
  rows: Sequence[Sequence[str]] = ()
  alt: str = ''


def slug(text: str) -> str:
  """A file- and anchor-safe name: 'augment=strong' -> 'augment-strong'."""
  return re.sub(r'[^A-Za-z0-9_.]+', '-', text).strip('-.') or 'x'


def _image(report_dir: str, path: str, alt: str, plot, *args) -> Block:
  """Draws `plot(*args, report_dir/path)` and returns the Block showing it."""
  plot(*args, os.path.join(report_dir, path))
  return Block('image', path, alt=alt)


TABLE_NOTE = (
    'Mean ± sample standard deviation over seeds; accuracies in %, the gap in points (train minus '
    'validation accuracy at the last epoch with both); "vs best": difference in test accuracy '
    f"from the best variant (Welch's t-test with {MIN_SEEDS_FOR_TEST}+ seeds per side, else "
    'against the sum of the two standard deviations); classes: mean per-class test accuracy over '
    'seeds; ms/step: steady state; epoch time: mean over the epochs after the first (which also '
    'compiles).')


def top_k_note(study: StudyResult) -> str:
  """A sentence when the study's runs have TOP_K classes or fewer: top-5 accuracy is then 100% by
  definition, not a result."""
  counts = sorted({len(r.per_class) for v in study.variants for r in v.runs if r.per_class})
  if not counts or counts[0] > TOP_K:
    return ''
  return (f' With {counts[0]} classes every label is among the top {TOP_K} predictions: top-{TOP_K} '
          'accuracy is 100% by definition.')


def study_blocks(study: StudyResult, report_dir: str) -> List[Block]:
  """A study's section (writes its plots under report_dir/plots/<study>/)."""
  folder = os.path.join(PLOTS_DIR, slug(study.name))
  blocks = [Block('h2', f'Study: {study.name}'),
            *[Block('p', s) for s in study_summary(study)],
            Block('h3', 'Variants'),
            Block('table', headers=TABLE_HEADERS, rows=study_table(study)),
            Block('p', TABLE_NOTE + top_k_note(study))]
  if study.not_counted:
    blocks += [Block('h3', 'Runs that do not count'),
               Block('table', headers=UNFINISHED_HEADERS, rows=unfinished_table(study))]
  if not study.finished():
    return blocks
  blocks += [Block('h3', 'Plots'),
             _image(report_dir, os.path.join(folder, 'accuracy.png'),
                    f'test accuracy by {study.axis.name}', plot_metric_vs_variant, study)]
  for variant in study.finished():
    blocks.append(_image(report_dir, os.path.join(folder, f'curves-{slug(variant.variant)}.png'),
                         f'learning curves: {variant.variant}', plot_learning_curves, variant))
  best = study.best_run()
  if best.per_class:
    blocks.append(_image(report_dir, os.path.join(folder, 'per-class.png'),
                         f'per-class accuracy of the best run {best.run_id}', plot_per_class,
                         best))
  if best.confusion is not None:
    blocks.append(_image(report_dir, os.path.join(folder, 'confusion.png'),
                         f'confusion matrix of the best run {best.run_id}', plot_confusion, best))
  return blocks


def build_document(studies: Sequence[StudyResult], records: Sequence[RunRecord],
                   report_dir: str, source: str, skipped: Sequence[str] = ()) -> List[Block]:
  """The whole report; writes the plots as it goes."""
  counted = [r for s in studies for v in s.variants for r in v.runs]
  blocks = [Block('h1', 'Study report'),
            Block('p', f'Generated by python -m pipeline.report from {source}: '
                  f'{plural(len(studies), "study", "studies")}, {plural(len(records), "run")}, '
                  f'{len(counted)} counted.')]
  if skipped:
    blocks.append(Block('p', f'{plural(len(skipped), "run")} of no study (plain runs, not '
                        'started by python -m pipeline.study) '
                        f'{"is" if len(skipped) == 1 else "are"} not in this report: '
                        + ', '.join(skipped) + '.'))
  for study in studies:
    blocks += study_blocks(study, report_dir)
  blocks.append(Block('h2', 'Accuracy against training time'))
  if counted:
    blocks.append(_image(report_dir, os.path.join(PLOTS_DIR, 'accuracy-vs-time.png'),
                         'accuracy against training time', plot_accuracy_vs_time, studies))
  else:
    blocks.append(Block('p', 'No finished run.'))
  blocks += [
      Block('h2', 'Device'),
      Block('table', headers=('device', 'name', 'CPU cores', 'precision', 'runs'),
            rows=device_rows(counted)),
      Block('h3', 'The course\'s step times beside this device'),
      Block('table', headers=('model', *(f'{d} (ms/step)' for d in COURSE_MS_PER_STEP),
                              'this device (ms/step)'),
            rows=course_timing_rows(counted)),
      Block('p', f'The course\'s figures are at batch {COURSE_BATCH_SIZE} with '
            f'{COURSE_NUM_CLASSES} classes (base/course.py); this device\'s are the steady-state '
            'ms/step of this report\'s runs, at their own batch size and precision '
            '(benchmarks/step_time.py measures the course\'s setting).')]
  return blocks


def _md_cell(text: str) -> str:
  return str(text).replace('|', '\\|').replace('\n', ' ')


def render_markdown(blocks: Sequence[Block]) -> str:
  lines = []
  for block in blocks:
    if block.kind in ('h1', 'h2', 'h3'):
      lines += ['#' * int(block.kind[1]) + ' ' + block.text, '']
    elif block.kind == 'p':
      lines += [block.text, '']
    elif block.kind == 'table':
      lines.append('| ' + ' | '.join(_md_cell(h) for h in block.headers) + ' |')
      lines.append('|' + '---|' * len(block.headers))
      lines += ['| ' + ' | '.join(_md_cell(c) for c in row) + ' |' for row in block.rows]
      lines.append('')
    elif block.kind == 'image':
      lines += [f'![{_md_cell(block.alt)}]({block.text.replace(os.sep, "/")})', '']
  return '\n'.join(lines)


_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def render_html(blocks: Sequence[Block], report_dir: str) -> str:
  """One self-contained page: inline CSS, images as base64 data URIs, nothing fetched."""
  parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<title>Study report</title>', f'<style>{_CSS}</style></head><body>']
  for block in blocks:
    text = html.escape(block.text)
    if block.kind in ('h1', 'h2', 'h3'):
      parts.append(f'<{block.kind} id="{slug(block.text)}">{text}</{block.kind}>')
    elif block.kind == 'p':
      parts.append(f'<p>{text}</p>')
    elif block.kind == 'table':
      head = ''.join(f'<th>{html.escape(h)}</th>' for h in block.headers)
      body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in row) + '</tr>'
                     for row in block.rows)
      parts.append(f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    elif block.kind == 'image':
      with open(os.path.join(report_dir, block.text), 'rb') as f:
        data = base64.b64encode(f.read()).decode('ascii')
      parts.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
  parts.append('</body></html>')
  return '\n'.join(parts)


# ---------------------------------------------------------------- reading runs (I/O edge) ---

def _study_tag(run: Dict[str, Any]) -> Tuple[str, str, Optional[int]]:
  return run.get('study') or '', run.get('variant') or '', run.get('seed')


def record_from_details(run: Dict[str, Any], details: Optional[Dict[str, Any]]) -> RunRecord:
  """A `RunRecord` from a `runs.list_runs` entry and its `runs.run_details` (None for a run that
  did not finish: only its state counts)."""
  study, variant, seed = _study_tag(run)
  details = details or {}
  training, evaluation = details.get('training') or {}, details.get('evaluation') or {}
  overall = evaluation.get('overall') or {}
  matrix = (evaluation.get('confusion_matrix') or {}).get('matrix')
  absent = '; '.join(f'{k}: {v}' for k, v in (details.get('absent') or {}).items()
                     if k in ('training', 'evaluation'))
  return RunRecord(
      run_id=run['run_id'], study=study, variant=variant, seed=seed, state=run['state'],
      failed=list(run.get('failed') or []), failure_reason=run.get('failure_reason') or '',
      model=(run.get('training') or {}).get('model') or '',
      test_accuracy=overall.get(ACCURACY), top5_accuracy=overall.get(TOP_K_ACCURACY),
      per_class=evaluation.get('per_class') or [], confusion=matrix,
      stats=training.get('stats'),
      stats_path=run.get('training_stats_path') or '',
      eval_uri=run.get('evaluation_uri') or '', absent=absent)


def read_records(output_dir: str, studies: Sequence[str] = ()) -> Tuple[List[RunRecord],
                                                                       List[str]]:
  """The study runs of an output dir (only `studies` when given), oldest first, and the ids of
  runs of no study. A run's study comes from its Trainer's tag, or for a run that stopped before
  its Trainer from the study ledger (`runs.attribute_runs`).

  Raises:
    UserError: no store, no runs, or none of the requested studies.
  """
  store = runs.open_store(output_dir)
  # The ledger attributes the study runs that stopped before their Trainer (which records the tag).
  listed = runs.list_runs(store, runs.read_ledger(output_dir))
  metadata = RunnerConfig(output_dir=output_dir).metadata_path
  if not listed:
    raise UserError(f'no pipeline runs in {metadata}: nothing to report (run python -m '
                    'pipeline.study first)')
  tagged = [r for r in listed if _study_tag(r)[0]]
  skipped = [r['run_id'] for r in listed if not _study_tag(r)[0]]
  known = list(dict.fromkeys(_study_tag(r)[0] for r in tagged))
  if not tagged:
    raise UserError(f'none of the {len(listed)} runs in {metadata} belongs to a study: run python '
                    '-m pipeline.study (or local_runner.py --study NAME --variant LABEL) first')
  if studies:
    unknown = [s for s in studies if s not in known]
    if unknown:
      raise UserError(f'no study {unknown[0]!r} in {metadata}; its studies: {", ".join(known)}')
    tagged = [r for r in tagged if _study_tag(r)[0] in studies]
    skipped = []
  records = []
  for run in tagged:
    print(f'  reading run {run["run_id"]} ({run["state"]}): {_study_tag(run)[0]} '
          f'{_study_tag(run)[1]}', flush=True)
    details = (runs.run_details(store, run['run_id'], sections=('classes', 'training',
                                                                 'evaluation'))
               if run['state'] in DONE_STATES else None)
    records.append(record_from_details(run, details))
  return records, skipped


# ---------------------------------------------------------------- command line --------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.report',
      description='Writes the study report from ML Metadata and the run artifacts: report.md '
      '(PNG plots beside it, under plots/), report.html (self-contained: images inlined, no '
      'external scripts, styles or fonts) and the PNGs. Per study: a table of its variants '
      '(test and top-5 accuracy as mean ± std over seeds, the difference from the best variant '
      f"with Welch's t-test p at {MIN_SEEDS_FOR_TEST}+ seeds, best and worst class, parameters, "
      'steady-state ms/step, epoch and training time, epochs, overfitting gap, run ids), the runs '
      'that failed or are still running, a summary written from the numbers, plots (accuracy '
      'against the varied value, learning curves per variant, per-class accuracy and confusion '
      'matrix of the best run); then accuracy against training time for every run, the device '
      'and the course\'s step-time table beside this device\'s.')
  parser.add_argument('--output-dir', default=RunnerConfig().output_dir,
                      help='the pipeline\'s --output-dir, holding metadata.sqlite and the runs\' '
                      'artifacts (default %(default)s)')
  parser.add_argument('--study', nargs='+', default=[], metavar='NAME',
                      help='report only these studies (default: every study in the store)')
  parser.add_argument('--report-dir', default=DEFAULT_REPORT_DIR,
                      help='where report.md, report.html and plots/ are written; created if '
                      'needed; files of the same names are replaced (default %(default)s)')
  return parser


def write_report(records: Sequence[RunRecord], report_dir: str, source: str,
                 skipped: Sequence[str] = ()) -> List[str]:
  """Groups, plots and renders; returns the paths written: report.md, report.html, the PNGs."""
  try:
    os.makedirs(os.path.join(report_dir, PLOTS_DIR), exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot write the report to {report_dir}: {e.strerror}') from e
  studies = group_studies(records)
  blocks = build_document(studies, records, report_dir, source, skipped)
  md_path, html_path = os.path.join(report_dir, REPORT_MD), os.path.join(report_dir, REPORT_HTML)
  with open(md_path, 'w') as f:
    f.write(render_markdown(blocks))
  with open(html_path, 'w') as f:
    f.write(render_html(blocks, report_dir))
  return [md_path, html_path] + [os.path.join(report_dir, b.text) for b in blocks
                                 if b.kind == 'image']


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = build_parser().parse_args(argv)
  from pipeline.inspect import quiet_tensorflow  # pylint: disable=g-import-not-at-top
  quiet_tensorflow()
  print(f'Reading ML Metadata in {args.output_dir}', flush=True)
  records, skipped = read_records(args.output_dir, args.study)
  studies = len({r.study for r in records})
  print(f'Writing the report of {plural(studies, "study", "studies")}, '
        f'{plural(len(records), "run")} to {args.report_dir}', flush=True)
  written = write_report(records, args.report_dir,
                         RunnerConfig(output_dir=args.output_dir).metadata_path, skipped)
  for path in written:
    print(f'Wrote {path}')


if __name__ == '__main__':
  cli.run_main(main, sys.argv[1:])
