"""The Evaluator's results as plain tables: per-slice metrics, per-class accuracy, confusion matrix.

Pure functions over what `tfma.load_eval_result(uri)` returns (`slicing_metrics` and `plots`: lists
of `(slice_key, {output_name: {sub_key: {name: value}}})`), so `pipeline.runs`, the notebooks
and the tests share one reading of TFMA's nested dicts; `load_eval_result` is the only I/O here.
"""
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from base import compat, constants
from pipeline.evaluation import ACCURACY, TOP_K_ACCURACY, macro_precision_recall

EXAMPLE_COUNT = 'example_count'  # the name of TFMA's ExampleCount metric (tests check it)
# The key of MultiClassConfusionMatrixPlot's data in a slice's plot dict (its proto field's JSON
# name).
CONFUSION_PLOT_KEY = 'multiClassConfusionMatrixAtThresholds'
METRICS = (ACCURACY, TOP_K_ACCURACY, EXAMPLE_COUNT)
OVERALL = 'Overall'  # the `slice` of the unsliced row
DIFF_SUFFIX = '_diff'  # TFMA's name suffix of a metric's change against the baseline model
# The predicted class id TFMA's confusion matrix gives an example whose top score is below the
# matrix's threshold.
_NO_PREDICTION = -1

SliceKey = Tuple[Tuple[str, Any], ...]


def metric_value(value: Any) -> Optional[float]:
  """A float from one of TFMA's metric values: {'doubleValue': x}, a bounded value (with
  confidence intervals) or a bare number; None for anything else (e.g. an error message)."""
  if isinstance(value, (int, float)):
    return float(value)
  if isinstance(value, dict):
    if 'doubleValue' in value:
      return float(value['doubleValue'])
    if 'boundedValue' in value:
      return metric_value(value['boundedValue'].get('value'))
    if 'value' in value:
      return metric_value(value['value'])
  return None


def _text(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def slice_columns(slice_key: SliceKey) -> Tuple[str, str]:
  """(feature, value) of a slice key: ('Overall', '') for the whole test split; crossed slices
  join their features and values with ' x '."""
  if not slice_key:
    return OVERALL, ''
  return (' x '.join(_text(f) for f, _ in slice_key), ' x '.join(_text(v) for _, v in slice_key))


def _default_output(by_output: Dict[str, Any]) -> Dict[str, Any]:
  """The metrics (or plots) of the model's only output and no sub key: our models have one head,
  and per-class numbers come from slices, not from TFMA sub keys."""
  if not by_output:
    return {}
  outputs = by_output.get('', next(iter(by_output.values())))
  return outputs.get('', next(iter(outputs.values()), {})) if outputs else {}


def slice_metric_rows(slicing_metrics: Iterable[Tuple[SliceKey, Dict[str, Any]]],
                      metric_names: Sequence[str] = METRICS) -> List[Dict[str, Any]]:
  """One dict per slice: {'slice': feature, 'value': feature value, <metric>: float or None}.

  The overall row comes first, then the slices sorted by feature and value.
  """
  rows = []
  for slice_key, by_output in slicing_metrics:
    feature, value = slice_columns(slice_key)
    metrics = _default_output(by_output or {})
    row = {'slice': feature, 'value': value}
    row.update({name: metric_value(metrics.get(name)) for name in metric_names})
    rows.append(row)
  return sorted(rows, key=lambda r: (r['slice'] != OVERALL, r['slice'], r['value']))


def slice_metrics_frame(slicing_metrics, metric_names: Sequence[str] = METRICS):
  """`slice_metric_rows` as a pandas DataFrame (columns: slice, value, the metrics)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  return pd.DataFrame(slice_metric_rows(slicing_metrics, metric_names),
                      columns=['slice', 'value', *metric_names])


def overall_row(rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The overall row of `slice_metric_rows`, or None."""
  return next((r for r in rows if r['slice'] == OVERALL), None)


def per_class_rows(rows: Sequence[Dict[str, Any]], class_names: Sequence[str],
                   feature: str = constants.LABEL_NAME_KEY) -> List[Dict[str, Any]]:
  """The per-class slices in the team's class order: {'label', 'class', <metrics>}.

  A class without test examples has no slice: its metrics are None and its example count 0.
  """
  by_value = {r['value']: r for r in rows if r['slice'] == feature}
  metric_names = [k for k in (rows[0] if rows else {}) if k not in ('slice', 'value')]
  result = []
  for label, name in enumerate(class_names):
    row = by_value.get(name, {})
    entry = {'label': label, 'class': name}
    entry.update({k: row.get(k) for k in metric_names})
    if EXAMPLE_COUNT in entry and entry[EXAMPLE_COUNT] is None:
      entry[EXAMPLE_COUNT] = 0.0
    result.append(entry)
  return result


def _overall(pairs: Iterable[Tuple[SliceKey, Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
  """The metrics (or plots) of the overall slice, or None."""
  for slice_key, by_output in pairs:
    if not slice_key:
      return _default_output(by_output or {})
  return None


def confusion_matrix(plots: Iterable[Tuple[SliceKey, Dict[str, Any]]],
                     num_classes: int) -> Optional[np.ndarray]:
  """The overall slice's MultiClassConfusionMatrixPlot as a [true, predicted] count matrix of
  shape (num_classes, num_classes), or None when the plot is absent.

  TFMA lists only the non-zero cells and drops fields equal to 0 (class id 0, threshold 0). Of the
  plot's thresholds the lowest is used (the plot's default, 0: every example counts under its top
  class); examples below it (predicted id -1) are left out.
  """
  plot = _overall(plots)
  if not plot or CONFUSION_PLOT_KEY not in plot:
    return None
  matrices = plot[CONFUSION_PLOT_KEY].get('matrices', [])
  if not matrices:
    return None
  chosen = min(matrices, key=lambda m: float(m.get('threshold', 0.0)))
  matrix = np.zeros((num_classes, num_classes), dtype=np.float64)
  for entry in chosen.get('entries', []):
    actual = int(entry.get('actualClassId', 0))
    predicted = int(entry.get('predictedClassId', 0))
    if predicted == _NO_PREDICTION or actual == _NO_PREDICTION:
      continue
    if not (0 <= actual < num_classes and 0 <= predicted < num_classes):
      raise ValueError(f'confusion matrix entry ({actual}, {predicted}) outside {num_classes} '
                       'classes: the evaluation is not of these classes')
    matrix[actual, predicted] += float(entry.get('numWeightedExamples', 0.0))
  return matrix


def evaluation_summary(slicing_metrics, plots, class_names: Sequence[str],
                       coarse_names: Sequence[str] = ()) -> Dict[str, Any]:
  """Everything a report needs from one evaluation, JSON-ready.

  Returns:
    {'overall': {accuracy, top-k accuracy, example count}, 'baseline_diff': {accuracy, top-k
    accuracy} minus the baseline's (None without a baseline), 'macro_precision', 'macro_recall'
    (from the confusion matrix; None without it), 'per_class': [...] in class order,
    'per_superclass': [...], 'confusion_matrix': {'classes': [...], 'matrix': [[...]]} or None}.
  """
  slicing_metrics = list(slicing_metrics)
  rows = slice_metric_rows(slicing_metrics)
  overall = overall_row(rows) or {}
  # With a baseline, TFMA adds '<metric>_diff' (candidate - baseline) to the candidate's metrics.
  raw = _overall(slicing_metrics) or {}
  diff = {name: metric_value(raw.get(name + DIFF_SUFFIX)) for name in (ACCURACY, TOP_K_ACCURACY)}
  matrix = confusion_matrix(plots, len(class_names))
  precision, recall = macro_precision_recall(matrix) if matrix is not None else (None, None)
  superclasses = sorted(set(coarse_names)) or sorted(
      {r['value'] for r in rows if r['slice'] == constants.COARSE_LABEL_KEY})
  return {
      'overall': {name: overall.get(name) for name in METRICS},
      'baseline_diff': diff if any(v is not None for v in diff.values()) else None,
      'macro_precision': precision,
      'macro_recall': recall,
      'per_class': per_class_rows(rows, class_names),
      'per_superclass': per_class_rows(rows, superclasses, constants.COARSE_LABEL_KEY),
      'confusion_matrix': None if matrix is None else {
          'classes': list(class_names), 'matrix': matrix.tolist()},
  }


def validation_failures(validation_result) -> List[Dict[str, Any]]:
  """The thresholds a model missed, from `tfma.load_validation_result(uri)`: one dict per failure
  ({'slice', 'value', 'metric' (with '_diff' for a change against the baseline), 'metric_value'}),
  overall first. Empty when the model passed."""
  failures = []
  for per_slice in validation_result.metric_validations_per_slice:
    keys = tuple((k.column, getattr(k, k.WhichOneof('kind')) if k.WhichOneof('kind') else '')
                 for k in per_slice.slice_key.single_slice_keys)
    feature, value = slice_columns(keys)
    for failure in per_slice.failures:
      key, metric = failure.metric_key, failure.metric_value
      failures.append({
          'slice': feature, 'value': value,
          'metric': key.name + (DIFF_SUFFIX if key.is_diff else ''),
          'metric_value': (metric.double_value.value if metric.HasField('double_value')
                           else None),
      })
  return sorted(failures, key=lambda r: (r['slice'] != OVERALL, r['slice'], r['value']))


def weighted_mean_accuracy(per_class: Sequence[Dict[str, Any]]) -> Optional[float]:
  """The example-count-weighted mean of per-class accuracies: equals the overall accuracy when
  the per-class slices cover the test split."""
  counted = [(r[ACCURACY], r[EXAMPLE_COUNT]) for r in per_class
             if r.get(ACCURACY) is not None and r.get(EXAMPLE_COUNT)]
  total = sum(n for _, n in counted)
  return sum(a * n for a, n in counted) / total if total else None


def load_eval_result(uri: str):
  """`tfma.load_eval_result` of a ModelEvaluation URI, for the candidate model.

  With a baseline the Evaluator stores two models ('candidate', 'baseline'): unnamed, TFMA returns
  the candidate's metrics (with `*_diff` metrics against the baseline) but no plots, so name it.
  """
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  # The EvalRun record that load_eval_result itself reads first.
  eval_config = compat.load_eval_run(uri)[0]
  specs = list(eval_config.model_specs) if eval_config else []
  candidate = next((s.name for s in specs if not s.is_baseline), None) if len(specs) > 1 else None
  return tfma.load_eval_result(uri, model_name=candidate)


def plot_per_class_accuracy(ax, per_class: Sequence[Dict[str, Any]],
                            overall_accuracy: Optional[float] = None):
  """Bars of per-class test accuracy (rows of `per_class_rows`, in class order) on a matplotlib
  Axes, with the overall accuracy as a dashed line; returns the Axes."""
  names = [r['class'] for r in per_class]
  positions = np.arange(len(names))
  ax.bar(positions, [r.get(ACCURACY) or 0.0 for r in per_class], color='tab:blue')
  ax.set_xticks(positions, names, rotation=90)
  ax.set_ylim(0.0, 1.0)
  ax.set_ylabel('test accuracy')
  if overall_accuracy is not None:
    ax.axhline(overall_accuracy, color='tab:red', linestyle='--',
               label=f'overall {overall_accuracy:.3f}')
    ax.legend(loc='upper right')
  return ax


def plot_confusion_matrix(ax, matrix: np.ndarray, class_names: Sequence[str],
                          normalize: bool = False):
  """A [true, predicted] matrix as a heatmap with the class names on both axes; counts written in
  the cells up to 30 classes. `normalize` divides each row by its count (the diagonal is then each
  class's recall). Returns the Axes."""
  values = np.asarray(matrix, dtype=np.float64)
  if normalize:
    totals = values.sum(axis=1, keepdims=True)
    values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
  image = ax.imshow(values, cmap='Blues')
  positions = np.arange(len(class_names))
  ax.set_xticks(positions, class_names, rotation=90)
  ax.set_yticks(positions, class_names)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  if len(class_names) <= 30:
    threshold = values.max() / 2 if values.size else 0
    for (row, column), value in np.ndenumerate(values):
      if value:
        ax.text(column, row, f'{value:.2f}' if normalize else f'{value:.0f}', ha='center',
                va='center', fontsize=7, color='white' if value > threshold else 'black')
  ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  return ax
