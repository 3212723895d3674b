"""Classify image files with the latest pushed (blessed) model.

    python -m pipeline.predict IMAGE... [--output-dir DIR] [--pipeline-name NAME] [--top-k 5]
    python -m pipeline.predict photo.jpg --model-dir outputs/serving_model/cifar100/1733000000

PNG or JPEG files of any size are resized the way the training images were stored (to the
model's stored size, e.g. 32x32 for CIFAR-100), then go through the model's serving signature as
tf.Examples holding PNG bytes, exactly as at serving time. An unreadable file gets its own error
line; the others are still classified. Exit status 1 when any file failed.
"""
import argparse
import json
import os
import sys
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from datasources import encoding, sources
from base import constants
from pipeline.cli import run_main
from base.configs import RunnerConfig
from base.errors import UserError

def latest_pushed_model(serving_model_dir: str) -> str:
  """The newest version folder under <output-dir>/serving_model/<pipeline>/."""
  versions = [v for v in os.listdir(serving_model_dir) if v.isdigit()] if os.path.isdir(
      serving_model_dir) else []
  if not versions:
    raise UserError(f'no pushed model in {serving_model_dir}: run the pipeline until the '
                    'Evaluator blesses a model, or pass --model-dir')
  return os.path.join(serving_model_dir, max(versions, key=int))


def stored_image_size(model_dir: str) -> int:
  with open(os.path.join(model_dir, constants.PROVENANCE_DIR, constants.CLASSES_FILE)) as f:
    return int(json.load(f)[constants.STORED_IMAGE_SIZE])


def load_as_png(path: str, size: int) -> bytes:
  """An image file as the PNG bytes of a size x size RGB image, read and converted to RGB exactly
  as ExampleGen reads training images (`sources.read_image`: decompression bombs, truncated
  files and unsupported modes are refused with a UserError)."""
  pixels, _ = sources.read_image(path)
  if pixels.shape[:2] != (size, size):
    pixels = np.asarray(Image.fromarray(pixels).resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)
  return encoding.encode_pngs(pixels[None])[0]


def image_example(png: bytes) -> bytes:
  return encoding.serialize_example({constants.IMAGE_KEY: encoding.bytes_feature(png)})


def top_k(probabilities: np.ndarray, class_names: Sequence[str],
          k: int) -> List[Tuple[str, float]]:
  order = np.argsort(-probabilities)[:k]
  return [(class_names[i], float(probabilities[i])) for i in order]


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('images', nargs='+', metavar='IMAGE', help='PNG or JPEG files')
  parser.add_argument('--output-dir', default=RunnerConfig().output_dir,
                      help='the pipeline\'s output dir (default %(default)s)')
  parser.add_argument('--pipeline-name', default=RunnerConfig().pipeline_name,
                      help='(default %(default)s)')
  parser.add_argument('--model-dir', help='a SavedModel folder; default: the latest pushed')
  parser.add_argument('--top-k', type=int, default=5, help='(default %(default)s)')
  parser.add_argument('--json', action='store_true', help='one JSON object per image')
  args = parser.parse_args(argv)
  if args.top_k < 1:
    raise UserError(f'--top-k {args.top_k}: must be 1 or more')
  model_dir = args.model_dir or latest_pushed_model(
      RunnerConfig(output_dir=args.output_dir, pipeline_name=args.pipeline_name).serving_model_dir)
  if not os.path.isfile(os.path.join(model_dir, 'saved_model.pb')):
    raise UserError(f'{model_dir}: not a SavedModel folder')
  size = stored_image_size(model_dir)

  examples, names, failed = [], [], 0
  with warnings.catch_warnings():
    # Pillow only warns about images between its pixel limit and twice it: refuse them too.
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    for path in args.images:
      try:
        examples.append(image_example(load_as_png(path, size)))
        names.append(path)
      except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        failed += 1
  if examples:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    serve = tf.saved_model.load(model_dir).signatures[constants.SERVING_SIGNATURE]
    with open(os.path.join(model_dir, constants.PROVENANCE_DIR, constants.CLASSES_FILE)) as f:
      class_names = json.load(f)['class_names']
    probabilities = serve(examples=tf.constant(examples))[constants.PROBABILITIES_OUTPUT].numpy()
    for path, probs in zip(names, probabilities):
      best = top_k(probs, class_names, args.top_k)
      if args.json:
        print(json.dumps({'image': path, 'top_k': [{'class': c, 'probability': p}
                                                   for c, p in best]}))
      else:
        print(f'{path}: ' + ', '.join(f'{c} {p:.1%}' for c, p in best))
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  run_main(main, sys.argv[1:])
