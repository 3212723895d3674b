"""What ML Metadata knows about the pipeline's runs, as text or JSON: an overview of every run, or
one run in full.

    python -m pipeline.inspect [--output-dir DIR] [--json]                  # every run, newest last
    python -m pipeline.inspect [--output-dir DIR] --run latest|RUN_ID [--json]  # one run in full

Only the command line and the rendering live here: the run records (`list_runs`, `run_details`,
`lineage`, ...) are read by `pipeline.runs`; `format_runs`/`format_run` turn them into text, one
formatter per section of `runs.SECTIONS` (`FORMATTERS`).
"""
import argparse
import json
import logging
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from pipeline import cli
from pipeline.runs import SECTIONS, list_runs, open_store, read_ledger, run_details
from base.configs import RunnerConfig

# Bookkeeping properties that every artifact carries: hidden in the text output, kept in JSON.
_QUIET_PROPERTIES = ('tfx_version', 'is_external', 'input_fingerprint', 'stats_dashboard_link',
                     'sample_rate_by_split')


def format_lineage(tree: Dict[str, Any]) -> str:
  """`lineage` as an indented tree: each artifact, then '<- component' and its inputs below."""
  lines = []

  def walk(node, indent, via):
    artifact = node['artifact']
    label = f'{via}: ' if via else ''
    lines.append(f'{indent}{label}{artifact["type"]} #{artifact["id"]}  {artifact["uri"]}'
                 + ('  (see above)' if node.get('seen') else ''))
    producer = node['producer']
    if producer:
      lines.append(f'{indent}  <- {producer["component"]} (execution {producer["id"]}, '
                   f'{producer["state"]}, run {producer["run"]})')
      for key, children in node['inputs'].items():
        for child in children:
          walk(child, indent + '     ', key)

  walk(tree, '', '')
  return '\n'.join(lines)


# ---------------------------------------------------------------- text ----------------------

def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = '  ') -> str:
  """Left-aligned columns, two spaces apart; None prints as '-'."""
  cells = [[str(h) for h in headers]] + [['-' if c is None else str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  return '\n'.join(indent + '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                   for r in cells)


def format_duration(seconds: Optional[float]) -> str:
  """'850 ms', '42 s', '3 min 05 s', '2 h 04 min'."""
  if seconds is None:
    return '-'
  if seconds < 1:
    return f'{seconds * 1000:.0f} ms'
  if seconds < 60:
    return f'{seconds:.0f} s' if seconds >= 10 else f'{seconds:.1f} s'
  minutes, secs = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f'{minutes} min {secs:02d} s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours} h {minutes:02d} min'


def _readable_time(iso: str) -> str:
  """'2026-11-30 10:48:32' from a local ISO 8601 time with offset."""
  return iso[:19].replace('T', ' ')


def _fraction(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.4f}'


def _signed(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:+.4f}'


def _number(value: Optional[float], digits: int = 0) -> str:
  return '-' if value is None else f'{value:,.{digits}f}'


def _state(summary: Dict[str, Any]) -> str:
  failed = summary.get('failed') or []
  return f'{summary["state"]} at {", ".join(failed)}' if failed else summary['state']


def _plural(count: Optional[int], one: str, many: str = '') -> Optional[str]:
  if count is None:
    return None
  return f'{count} {one if count == 1 else (many or one + "s")}'


def _config_line(config: Dict[str, Any]) -> str:
  epochs = _plural(config.get('epochs'), 'epoch')
  if epochs and config.get('time_budget'):  # the epochs trained are in the Training section
    epochs = f'{config["time_budget"]:g}-minute budget of at most {epochs}'
  parts = [config.get('model') or '-', epochs,
           _plural(config.get('num_classes'), 'class', 'classes'),
           config.get('source')]
  return ', '.join(p for p in parts if p)


def _failures(runs: Sequence[Dict[str, Any]]) -> List[str]:
  """One line per failed run that ML Metadata knows the reason of."""
  return [f'  {r["run_id"]} failed at {", ".join(r["failed"])}: {r["failure_reason"]}'
          for r in runs if r.get('failure_reason')]


def format_runs(runs: Sequence[Dict[str, Any]], metadata_path: str = '') -> str:
  """The overview table of `list_runs`, oldest first; then why runs failed, when recorded."""
  where = f' in {metadata_path}' if metadata_path else ''
  if not runs:
    return f'No pipeline runs{where}.'
  rows = [(r['run_id'], r['pipeline'], _readable_time(r['started']),
           format_duration(r['duration_sec']), _state(r), _fraction(r['test_accuracy']),
           r['study'] or None, r['variant'] or None,
           f'{r["num_executions"]} ({r["executions_by_state"].get("CACHED", 0)} cached)',
           _config_line(r['config'])) for r in runs]
  failures = _failures(runs)
  return '\n'.join([
      f'{len(runs)} pipeline run{"s" if len(runs) != 1 else ""}{where} (oldest first; times are '
      'local; test accuracy on the overall test split):',
      format_table(('RUN ID', 'PIPELINE', 'STARTED', 'TOOK', 'STATE', 'TEST ACC', 'STUDY',
                    'VARIANT', 'EXECUTIONS', 'CONFIG'), rows),
      *([''] + ['Failures:'] + failures if failures else []),
      '',
      'One run in full (classes, training figures, metrics, executions, artifacts): '
      '--run RUN_ID or --run latest.'])


def _format_classes(classes, details) -> List[str]:
  return [f'Classes ({len(classes)})', format_table(
      ('LABEL', 'CLASS', 'SOURCE ID', 'SUPERCLASS'),
      [(c['label'], c['name'], c['id'], c['superclass']) for c in classes])]


def _format_tuning(tuning, details) -> List[str]:
  trials = tuning['trials']
  names = [k for k in (trials[0] if trials else {})
           if k not in ('trial_id', 'status', tuning['objective'], 'seconds', 'family')]
  rows = [(t['trial_id'], t['status'], _fraction(t.get(tuning['objective'])),
           format_duration(t.get('seconds')), *[_short(t.get(n), 12) for n in names])
          for t in trials]
  return [f'Tuning ({_plural(len(trials), "trial")}, best first; {tuning["uri"]})', format_table(
      ('TRIAL', 'STATUS', tuning['objective'].upper(), 'TOOK', *[n.upper() for n in names]),
      rows)]


def _format_training(training, details) -> List[str]:
  s = training['stats']
  config = s.get('training_config') or training['config']  # after tuned values, when recorded
  best = s.get('best_val_accuracy')
  lines = [
      f'Training ({training["model_uri"]})',
      f'  model {s.get("model")}, image size {s.get("image_size")}, '
      f'{_plural(s.get("epochs"), "epoch")}, batch {s.get("batch_size")}, '
      f'optimizer {config.get("optimizer", "-")}, '
      f'precision {s.get("precision")}',
      f'  parameters {_number(s.get("total_params"))} ({_number(s.get("trainable_params"))} '
      'trainable)',
      f'  device {s.get("device_type")} {s.get("device_name")} ({s.get("cpu_cores")} CPU cores, '
      f'{s.get("gpu_count", 0)} GPUs); peak host memory '
      f'{_number(s.get("peak_host_memory_mib"))} MiB',
      f'  {_number(s.get("ms_per_step"), 1)} ms/step, {_number(s.get("examples_per_sec"))} '
      f'examples/s (steady state: {s.get("steady_state_steps")})',
      f'  total training time {format_duration(s.get("total_training_time_sec"))}; '
      f'best val accuracy {_fraction(best)} at epoch {s.get("best_epoch")}',
  ]
  hyperparameters = s.get('hyperparameters') or {}
  if hyperparameters.get('values'):
    shown = ', '.join(f'{k}={_short(v, 12)}' for k, v in hyperparameters['values'].items()
                      if k != 'family' and not k.startswith('tuner/'))
    lines.append(f'  hyperparameters from {hyperparameters.get("source")}: {shown}')
  return lines


def _format_evaluation(evaluation, details) -> List[str]:
  from pipeline import analysis  # pylint: disable=g-import-not-at-top
  from pipeline.evaluation import ACCURACY, TOP_K_ACCURACY  # pylint: disable=g-import-not-at-top
  overall = evaluation['overall']
  k = evaluation['top_k']
  count = overall.get(analysis.EXAMPLE_COUNT)
  header = [
      f'Evaluation (test split, {_number(count)} examples; {evaluation["uri"]})',
      f'  accuracy {_fraction(overall.get(ACCURACY))}, top-{k} accuracy '
      f'{_fraction(overall.get(TOP_K_ACCURACY))}, macro precision '
      f'{_fraction(evaluation["macro_precision"])}, macro recall '
      f'{_fraction(evaluation["macro_recall"])}',
      f'  thresholds {"passed" if evaluation["validation_ok"] else "NOT passed"}; baseline: '
      f'{evaluation["baseline_model"] or "none (no blessed model before)"}',
  ]
  failures = evaluation.get('validation_failures') or []
  if failures:
    shown = ', '.join(f'{r["slice"]}{"=" + r["value"] if r["value"] else ""} '
                      f'({r["metric"]} {_signed(r["metric_value"])})' for r in failures[:3])
    more = f' and {len(failures) - 3} more' if len(failures) > 3 else ''
    header.append(f'  missed {_plural(len(failures), "threshold")}: {shown}{more}')
  diff = evaluation.get('baseline_diff')
  if diff:
    header.append(f'  against the baseline: accuracy {_signed(diff.get(ACCURACY))}, top-{k} '
                  f'accuracy {_signed(diff.get(TOP_K_ACCURACY))}')

  def rows(entries):
    return [(r['class'], _fraction(r.get(ACCURACY)), _fraction(r.get(TOP_K_ACCURACY)),
             _number(r.get(analysis.EXAMPLE_COUNT))) for r in entries]

  return header + [
      format_table(('CLASS', 'ACCURACY', f'TOP-{k}', 'EXAMPLES'), rows(evaluation['per_class'])),
      '',
      format_table(('SUPERCLASS', 'ACCURACY', f'TOP-{k}', 'EXAMPLES'),
                   rows(evaluation['per_superclass']))]


def _format_deployment(deployment, details) -> List[str]:
  if deployment['pushed']:
    pushed = f'pushed to {deployment["pushed_destination"]}'
  elif deployment['pushed'] is None:
    pushed = f'not pushed (Pusher {deployment["pusher"] or "did not run"})'
  else:
    pushed = 'not pushed'
  return ['Deployment', f'  {"blessed" if deployment["blessed"] else "NOT blessed"}; {pushed}']


def _format_executions(details) -> List[str]:
  def ids(by_key):
    return ' '.join(f'{k}:{",".join(map(str, v))}' for k, v in by_key.items()) or '-'
  return ['Executions', format_table(
      ('ID', 'COMPONENT', 'STATE', 'TOOK', 'TYPE', 'INPUTS', 'OUTPUTS'),
      [(e['id'], e['component'], e['state'], format_duration(e['duration_sec']), e['type'],
        ids(e['inputs']), ids(e['outputs'])) for e in details['executions']])]


def _short(value: Any, width: int = 60) -> str:
  text = (value if isinstance(value, str) else f'{value:.4g}' if isinstance(value, float)
          else json.dumps(value))
  return text if len(text) <= width else text[:width - 3] + '...'


def _format_artifacts(details) -> List[str]:
  run_id = details['run']['run_id']
  rows = []
  for a in details['artifacts']:
    shown = ' '.join(f'{k}={_short(v)}' for k, v in a['properties'].items()
                     if k not in _QUIET_PROPERTIES)
    origin = None
    if a['written_by_run'] not in (run_id, None):
      origin = f'{"cached" if a["producer"] else "input"}, from run {a["written_by_run"]}'
    rows.append((a['id'], a['type'], a['producer'] or 'input', a['uri'], origin, shown or None))
  return ['Artifacts', format_table(
      ('ID', 'TYPE', 'PRODUCER', 'URI', 'ORIGIN', 'PROPERTIES'), rows)]


# name -> formatter(section value, details) -> lines; one per entry of SECTIONS.
FORMATTERS: Dict[str, Callable[[Any, Dict[str, Any]], List[str]]] = {
    'classes': _format_classes,
    'tuning': _format_tuning,
    'training': _format_training,
    'evaluation': _format_evaluation,
    'deployment': _format_deployment,
}


def _results_line(summary: Dict[str, Any]) -> str:
  """Study, variant, seed and test accuracy of a `list_runs` entry, in one line."""
  study = (f'study {summary["study"]}, variant {summary["variant"] or "-"}; ' if summary['study']
           else '')
  return (f'  {study}seed {summary["seed"] if summary["seed"] is not None else "-"}; test '
          f'accuracy {_fraction(summary["test_accuracy"])}, top-{summary["top_k"]} accuracy '
          f'{_fraction(summary["test_top_k_accuracy"])}')


def format_run(details: Dict[str, Any]) -> str:
  """`run_details` as text: the run's summary, each section (or why it is absent), executions,
  artifacts."""
  summary = details['run']
  reason = f': {summary["failure_reason"]}' if summary.get('failure_reason') else ''
  lines = [
      f'Run {summary["run_id"]} of pipeline {summary["pipeline"]}: {_state(summary)}{reason}',
      f'  started {_readable_time(summary["started"])} (local time), took '
      f'{format_duration(summary["duration_sec"])}; {summary["num_executions"]} executions '
      f'({summary["executions_by_state"].get("CACHED", 0)} cached)',
      f'  {_config_line(summary["config"])}'
      + (f' ({summary["config"]["source_path"]})' if summary['config'].get('source_path') else ''),
      _results_line(summary),
  ]
  for name, _ in SECTIONS:
    if name not in details:
      continue
    lines.append('')
    if details[name] is None and name not in details['absent']:
      lines.pop()  # a section that does not apply to this run (e.g. no tuning)
    elif details[name] is None:
      lines.append(f'{name.capitalize()}: absent ({details["absent"].get(name, "")})')
    else:
      lines.extend(FORMATTERS[name](details[name], details))
  for part in (_format_executions, _format_artifacts):
    lines.append('')
    lines.extend(part(details))
  return '\n'.join(lines)


def to_json(document: Any) -> str:
  """The --json output: indented, keys in insertion order."""
  return json.dumps(document, indent=2, default=str)


# ---------------------------------------------------------------- command line --------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.inspect',
      description='What ML Metadata recorded about the pipeline runs in an output dir. Without '
      '--run: one line per run (oldest first, newest last; times in local time): run id, '
      'pipeline, start, duration, state (COMPLETE, CACHED = everything reused, FAILED at '
      '<component>, RUNNING, ...), test accuracy, study, variant, executions, '
      'model/epochs/classes/source; then why runs failed, when recorded. With --run: that run '
      'in full: the team\'s classes, training-time figures, test metrics (overall, macro '
      'precision/recall, per class and superclass), blessing and push, and every execution and '
      'artifact.')
  parser.add_argument('--output-dir', default=RunnerConfig().output_dir,
                      help='the pipeline\'s --output-dir, holding metadata.sqlite '
                      '(default %(default)s)')
  parser.add_argument('--run', metavar='RUN_ID',
                      help="one run in full: its id (or a unique prefix of it), or 'latest'")
  parser.add_argument('--json', action='store_true',
                      help='print one JSON document (the same content) for scripts')
  return parser


def _errors_only(record: logging.LogRecord) -> bool:
  return record.levelno >= logging.ERROR


def quiet_tensorflow() -> None:
  """Hides the deprecation notices that TFMA's import and readers log: no news to the user.

  Call it before TensorFlow loads (its C++ log level is read once). A filter, not only a level:
  in a notebook TensorFlow resets its logger to INFO when it first logs.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  warnings.filterwarnings('ignore', category=FutureWarning, module='google')
  for name in ('tensorflow', 'absl'):
    logger = logging.getLogger(name)
    logger.setLevel(logging.ERROR)
    logger.addFilter(_errors_only)


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = build_parser().parse_args(argv)
  store = open_store(args.output_dir)
  metadata_path = RunnerConfig(output_dir=args.output_dir).metadata_path
  if args.run is None:
    runs = list_runs(store, read_ledger(args.output_dir))
    print(to_json({'metadata_path': metadata_path, 'runs': runs}) if args.json
          else format_runs(runs, metadata_path))
    return
  quiet_tensorflow()
  details = run_details(store, args.run)
  print(to_json(details) if args.json else format_run(details))


if __name__ == '__main__':
  cli.run_main(main, sys.argv[1:])
