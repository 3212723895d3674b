"""Checks of a written study report against the runs themselves, for end-to-end tests.

`check_report(output_dir, report_dir)` reads ML Metadata with ml_metadata's own API, each run's
training_stats.json and its TFMA evaluation directly (not through `pipeline.runs` or
`pipeline.report`), and asserts that every cell of every study table in report.md equals those
numbers (means and sample standard deviations over seeds computed here), that every PNG decodes
and is not blank, that report.html references nothing outside itself, and that runs which failed
are listed as failed.
"""
import json
import os
import re
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from base import compat  # the one place that knows where each stack's TFMA keeps load_eval_run

REPORT_MD, REPORT_HTML = 'report.md', 'report.html'
ACCURACY = 'sparse_categorical_accuracy'
TOP_K_ACCURACY = 'sparse_top_k_categorical_accuracy'
DONE = ('COMPLETE', 'CACHED')


# ---------------------------------------------------------------- files ---------------------

def png_problem(path: str) -> Optional[str]:
  """None when the file is a PNG that decodes to an image with visible content; else why not."""
  try:
    with Image.open(path) as image:
      if image.format != 'PNG':
        return f'{path}: {image.format}, not PNG'
      pixels = np.asarray(image.convert('RGB'), dtype=np.float64)
  except (OSError, ValueError) as e:
    return f'{path}: does not decode ({e})'
  colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
  if pixels.size == 0 or colours < 3 or pixels.std() < 1.0:
    return f'{path}: blank ({colours} colours, std {pixels.std():.2f})'
  return None


_ATTRIBUTE = re.compile(r'''\b(?:src|href|srcset|poster|data|action)\s*=\s*["']?([^"'\s>]*)''',
                        re.IGNORECASE)
_CSS_URL = re.compile(r'url\(\s*["\']?([^"\')\s]*)', re.IGNORECASE)


def external_references(text: str) -> List[str]:
  """What an HTML page would fetch from outside itself: src/href values other than data: URIs and
  in-page anchors, CSS url(...) other than data:, @import, <script src>, <link>."""
  found = [v for v in _ATTRIBUTE.findall(text) if not (v.startswith('data:') or v.startswith('#'))]
  found += [v for v in _CSS_URL.findall(text) if not v.startswith('data:')]
  found += re.findall(r'@import[^;]*', text, re.IGNORECASE)
  found += re.findall(r'<script[^>]*\bsrc\b[^>]*>', text, re.IGNORECASE)
  found += re.findall(r'<link\b[^>]*>', text, re.IGNORECASE)
  return found


def markdown_images(markdown: str) -> List[str]:
  return re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', markdown)


def markdown_tables(section: str) -> Dict[str, List[Dict[str, str]]]:
  """The tables of a Markdown section by the '### ' heading above them: rows as {header: cell}."""
  tables: Dict[str, List[Dict[str, str]]] = {}
  heading, lines = '', section.splitlines()
  i = 0
  while i < len(lines):
    line = lines[i]
    if line.startswith('### '):
      heading = line[4:].strip()
    if line.startswith('|') and i + 1 < len(lines) and lines[i + 1].startswith('|---'):
      headers = _cells(line)
      rows = []
      i += 2
      while i < len(lines) and lines[i].startswith('|'):
        rows.append(dict(zip(headers, _cells(lines[i]))))
        i += 1
      tables.setdefault(heading, rows)
      continue
    i += 1
  return tables


def _cells(line: str) -> List[str]:
  cells = re.split(r'(?<!\\)\|', line.strip())[1:-1]
  return [c.strip().replace('\\|', '|') for c in cells]


def study_sections(markdown: str) -> Dict[str, str]:
  """'## Study: NAME' section text by study name."""
  parts = re.split(r'^## ', markdown, flags=re.MULTILINE)
  return {p.split('\n', 1)[0][len('Study: '):].strip(): p for p in parts
          if p.startswith('Study: ')}


def numbers(cell: str) -> List[float]:
  """The numbers of a cell: '81.23 ± 1.05' -> [81.23, 1.05]; '1,234 / 5,678' -> [1234, 5678]."""
  return [float(n.replace(',', '')) for n in re.findall(r'-?\d[\d,]*\.?\d*', cell)]


# ---------------------------------------------------------------- the runs, read directly ---

def _store(output_dir: str):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = os.path.join(output_dir, 'metadata.sqlite')
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def read_runs(output_dir: str) -> List[Dict[str, Any]]:
  """Every pipeline run, oldest first: {'run_id', 'state' (FAILED, RUNNING or DONE), 'study',
  'variant', 'seed', 'model_uri', 'evaluation_uri'}, straight from ML Metadata."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  store = _store(output_dir)
  types = {t.id: t.name for t in store.get_execution_types()}
  artifact_types = {t.id: t.name for t in store.get_artifact_types()}
  state = metadata_store_pb2.Execution.State
  result = []
  for context in sorted(store.get_contexts_by_type('pipeline_run'),
                        key=lambda c: (c.create_time_since_epoch, c.id)):
    executions = store.get_executions_by_context(context.id)
    states = [e.last_known_state for e in executions]
    run = {'run_id': context.name, 'study': '', 'variant': '', 'seed': None, 'model_uri': None,
           'evaluation_uri': None,
           'state': ('FAILED' if any(s in (state.FAILED, state.CANCELED) for s in states) else
                     'RUNNING' if any(s not in (state.COMPLETE, state.CACHED) for s in states)
                     else 'DONE')}
    for execution in executions:
      kind = types[execution.type_id].rsplit('.', 1)[-1]
      outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                 if e.type in (metadata_store_pb2.Event.OUTPUT,
                               metadata_store_pb2.Event.DECLARED_OUTPUT)]
      artifacts = store.get_artifacts_by_id(outputs)
      uris = {artifact_types[a.type_id]: a.uri for a in artifacts}
      if kind == 'Trainer':
        # TFX records execution properties as MLMD custom properties, JSON-encoded.
        custom = json.loads(execution.custom_properties['custom_config'].string_value or 'null'
                            ) or {}
        tag = custom.get('study') or {}
        run.update(study=tag.get('study') or '', variant=tag.get('variant') or '',
                   seed=(custom.get('training') or {}).get('seed'), model_uri=uris.get('Model'))
      elif kind == 'Evaluator':
        run['evaluation_uri'] = uris.get('ModelEvaluation')
    result.append(run)
  return result


def read_evaluation(uri: str) -> Tuple[Dict[str, float], Dict[str, float]]:
  """(overall {accuracy, top-k accuracy}, per-class accuracy by class name) of a ModelEvaluation,
  for the candidate model (with a baseline, TFMA stores both)."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  eval_config = compat.load_eval_run(uri)[0]
  specs = list(eval_config.model_specs)
  name = next(s.name for s in specs if not s.is_baseline) if len(specs) > 1 else None
  result = tfma.load_eval_result(uri, model_name=name)
  overall, per_class = {}, {}
  for slice_key, by_output in result.slicing_metrics:
    metrics = by_output[''][''] if '' in by_output else next(iter(by_output.values()))['']
    if not slice_key:
      overall = {k: metrics[k]['doubleValue'] for k in (ACCURACY, TOP_K_ACCURACY)}
    elif len(slice_key) == 1 and slice_key[0][0] == 'label_name':
      value = slice_key[0][1]
      per_class[value.decode() if isinstance(value, bytes) else str(value)] = (
          metrics[ACCURACY]['doubleValue'])
  return overall, per_class


# ---------------------------------------------------------------- the assertions ------------

def _close(cell: str, values: Sequence[float], scale: float, digits: int, what: str) -> None:
  """The cell shows mean (and, with 2+ values, the sample std) of values*scale to `digits`."""
  shown = numbers(cell)
  expected = [statistics.fmean(values) * scale]
  if len(values) >= 2:
    expected.append(statistics.stdev(values) * scale)
  tolerance = 0.51 * 10 ** -digits + 1e-9
  assert len(shown) == len(expected), f'{what}: cell {cell!r}, expected {expected}'
  for s, e in zip(shown, expected):
    assert abs(s - e) <= tolerance, f'{what}: cell {cell!r} but the runs give {expected}'


def _check_variant(row: Dict[str, str], runs: Sequence[Dict[str, Any]], where: str) -> None:
  stats = []
  for run in runs:
    with open(os.path.join(run['model_uri'], 'training_stats.json')) as f:
      stats.append(json.load(f))
  evaluations = [read_evaluation(run['evaluation_uri']) for run in runs]
  assert row['seeds'] == ', '.join(str(r['seed']) for r in runs), f'{where}: seeds {row["seeds"]}'
  _close(row['test accuracy (%)'], [e[0][ACCURACY] for e in evaluations], 100, 2,
         f'{where} test accuracy')
  _close(row['top-5 accuracy (%)'], [e[0][TOP_K_ACCURACY] for e in evaluations], 100, 2,
         f'{where} top-5 accuracy')
  _close(row['ms/step'], [s['ms_per_step'] for s in stats], 1, 1, f'{where} ms/step')
  # After the first epoch, which also compiles; a one-epoch run's only epoch.
  _close(row['epoch time (s)'],
         [statistics.fmean(s['epoch_time_sec'][1:] or s['epoch_time_sec']) for s in stats], 1, 2,
         f'{where} epoch time')
  _close(row['training time (s)'], [s['total_training_time_sec'] for s in stats], 1, 1,
         f'{where} training time')
  gaps = []
  for s in stats:  # the last epoch that logged both accuracies
    last = max(i for i, (t, v) in enumerate(zip(s['train_accuracy'], s['val_accuracy']))
               if t is not None and v is not None)
    gaps.append(s['train_accuracy'][last] - s['val_accuracy'][last])
  _close(row['overfitting gap (points)'], gaps, 100, 2, f'{where} overfitting gap')
  epochs = [s['epochs'] for s in stats]
  if len(set(epochs)) == 1:
    assert numbers(row['epochs']) == [epochs[0]], f'{where}: epochs {row["epochs"]} vs {epochs}'
  else:
    _close(row['epochs'], epochs, 1, 1, f'{where} epochs')
  trainable, total = {s['trainable_params'] for s in stats}, {s['total_params'] for s in stats}
  if len(trainable) == 1 and len(total) == 1:
    assert numbers(row['trainable / total params']) == [*trainable, *total], (
        f'{where}: params {row["trainable / total params"]} vs {trainable}/{total}')
  per_class: Dict[str, List[float]] = {}
  for _, classes in evaluations:
    for name, accuracy in classes.items():
      per_class.setdefault(name, []).append(accuracy)
  means = {name: statistics.fmean(v) for name, v in per_class.items()}
  for column, pick in (('best class (%)', max), ('worst class (%)', min)):
    name, shown = row[column].rsplit(' ', 1)
    assert name in means, f'{where}: {column} {name!r} is not a class of the evaluation'
    assert abs(means[name] * 100 - float(shown)) <= 0.051, f'{where}: {column} {row[column]}'
    assert abs(means[name] - pick(means.values())) <= 1e-9, (
        f'{where}: {column} is {name} ({means[name]}), but {pick(means.values())} is the '
        f'{column.split()[0]}')


def _check_versus_best(rows: Dict[str, Dict[str, str]], runs: Sequence[Dict[str, Any]],
                       study: str) -> None:
  """The 'vs best' column: 'best' on the variant with the highest mean test accuracy, elsewhere
  the difference of means in points (and Welch's p with 3+ seeds on both sides)."""
  accuracies: Dict[str, List[float]] = {}
  for variant, row in rows.items():
    if row['vs best'] == '-':
      continue
    ids = row['runs'].split(', ')
    accuracies[variant] = [read_evaluation(r['evaluation_uri'])[0][ACCURACY]
                           for i in ids for r in runs if r['run_id'] == i]
  if not accuracies:
    return
  best = max(accuracies, key=lambda v: statistics.fmean(accuracies[v]))
  assert rows[best]['vs best'] == 'best', f'{study}: {best} is the best variant'
  for variant, values in accuracies.items():
    if variant == best:
      continue
    cell = rows[variant]['vs best']
    difference = (statistics.fmean(values) - statistics.fmean(accuracies[best])) * 100
    assert abs(numbers(cell)[0] - difference) <= 0.0051, f'{study} / {variant}: vs best {cell}'
    if min(len(values), len(accuracies[best])) >= 3 and 'p = ' in cell:
      from scipy import stats  # pylint: disable=g-import-not-at-top
      p_value = stats.ttest_ind(values, accuracies[best], equal_var=False).pvalue
      assert f'p = {p_value:.2g}' in cell or (p_value < 0.001 and '< 0.001' in cell), (
          f'{study} / {variant}: {cell}, Welch p = {p_value}')


def check_report(output_dir: str, report_dir: str) -> None:
  """Asserts that the report in report_dir tells the truth about the study runs in output_dir."""
  with open(os.path.join(report_dir, REPORT_MD)) as f:
    markdown = f.read()
  with open(os.path.join(report_dir, REPORT_HTML)) as f:
    page = f.read()
  assert not external_references(page), f'report.html fetches {external_references(page)[:5]}'
  images = markdown_images(markdown)
  assert images, 'report.md shows no plot'
  assert page.count('src="data:image/png;base64,') == len(images), 'HTML and Markdown differ'
  for image in images:
    assert not os.path.isabs(image) and '..' not in image, f'{image}: not inside the report dir'
    problem = png_problem(os.path.join(report_dir, image))
    assert problem is None, problem

  runs = [r for r in read_runs(output_dir) if r['study']]
  sections = study_sections(markdown)
  assert runs, f'no run in {output_dir} carries a study tag'
  assert set(sections) <= {r['study'] for r in runs}, f'studies {set(sections)} not in the store'
  for study in dict.fromkeys(r['study'] for r in runs):
    assert study in sections, f'study {study} missing from the report'
    tables = markdown_tables(sections[study])
    rows = {row['variant']: row for row in tables['Variants']}
    not_counted = {row['run']: row for row in tables.get('Runs that do not count', [])}
    mine = [r for r in runs if r['study'] == study]
    for variant in dict.fromkeys(r['variant'] for r in mine):
      assert variant in rows, f'{study}: variant {variant} missing'
      counted: Dict[Any, Dict[str, Any]] = {}
      for run in (r for r in mine if r['variant'] == variant):
        if run['state'] == 'DONE' and run['model_uri'] and run['evaluation_uri']:
          counted[run['seed']] = run  # a rerun of a seed replaces the older run
        else:
          assert run['run_id'] in not_counted, f'{study}: unfinished {run["run_id"]} not listed'
          if run['state'] == 'FAILED':
            assert not_counted[run['run_id']]['state'] in ('FAILED', 'CANCELED'), (
                f'{run["run_id"]} failed but shows {not_counted[run["run_id"]]["state"]}')
      where = f'{study} / {variant}'
      if not counted:
        states = {r['state'] for r in mine if r['variant'] == variant}
        shown = rows[variant]['test accuracy (%)']
        if states == {'FAILED'}:
          assert set(shown.split(', ')) <= {'failed', 'canceled'}, (
              f'{where}: every run failed, but the table shows {shown}')
        continue
      listed = rows[variant]['runs'].split(', ')
      assert listed == [r['run_id'] for r in counted.values()], f'{where}: runs {listed}'
      _check_variant(rows[variant], list(counted.values()), where)
    _check_versus_best(rows, mine, study)
