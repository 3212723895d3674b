"""Classify image files with the latest pushed (blessed) model.

    python -m pipeline.predict IMAGE... [--output-dir DIR] [--pipeline-name NAME] [--top-k 5]
    python -m pipeline.predict photo.jpg --model-dir outputs/serving_model/cifar100/1733000000

PNG or JPEG files of any size are resized the way the training images were stored (to the
model's stored size, e.g. 32x32 for CIFAR-100), then go through the model's serving signature as
tf.Examples holding PNG bytes, exactly as at serving time. An unreadable file gets its own error
line; the others are still classified. Exit status 1 when any file failed.

    python -m pipeline.predict --request request.json [--model-dir DIR]

answers a REST request body as TF Serving and Vertex AI Prediction receive it,
`{"instances": [{"b64": "<base64 PNG or JPEG>"}, ...]}`, through the model's image-bytes
signature, and prints the `{"predictions": [...]}` response such a server sends back.
"""
import argparse
import base64
import binascii
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


def rest_instances(body) -> List[bytes]:
  """The encoded images of a REST predict request body (TF Serving's row format): each instance
  is {"b64": ...} or {"image_bytes": {"b64": ...}}."""
  instances = body.get('instances') if isinstance(body, dict) else None
  if not isinstance(instances, list) or not instances:
    raise UserError('the request needs "instances": a list of {"b64": "<base64 image>"}')
  images = []
  for i, instance in enumerate(instances):
    if isinstance(instance, dict) and constants.IMAGE_BYTES_INPUT in instance:
      instance = instance[constants.IMAGE_BYTES_INPUT]
    if not isinstance(instance, dict) or not isinstance(instance.get('b64'), str):
      raise UserError(f'instance {i}: expected {{"b64": "<base64 image>"}}')
    try:
      images.append(base64.b64decode(instance['b64'], validate=True))
    except binascii.Error as e:
      raise UserError(f'instance {i}: not base64 ({e})') from e
  return images


def rest_predict(model_dir: str, body) -> dict:
  """A REST predict request body -> the response body, through the image-bytes signature."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images = rest_instances(body)
  signature = tf.saved_model.load(model_dir).signatures[constants.IMAGE_BYTES_SIGNATURE]
  try:
    outputs = signature(**{constants.IMAGE_BYTES_INPUT: tf.constant(images)})
  except tf.errors.InvalidArgumentError as e:
    for i, image in enumerate(images):  # which one: decode each on its own
      try:
        tf.io.decode_image(image, channels=3, expand_animations=False)
      except tf.errors.InvalidArgumentError:
        raise UserError(f'instance {i}: not a PNG or JPEG image') from e
    raise
  return {'predictions': [
      {constants.CLASS_ID_OUTPUT: int(class_id), constants.CLASS_NAME_OUTPUT: name.decode(),
       constants.PROBABILITIES_OUTPUT: [float(p) for p in probabilities]}
      for class_id, name, probabilities in zip(
          outputs[constants.CLASS_ID_OUTPUT].numpy(), outputs[constants.CLASS_NAME_OUTPUT].numpy(),
          outputs[constants.PROBABILITIES_OUTPUT].numpy())]}


def top_k(probabilities: np.ndarray, class_names: Sequence[str],
          k: int) -> List[Tuple[str, float]]:
  order = np.argsort(-probabilities)[:k]
  return [(class_names[i], float(probabilities[i])) for i in order]


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('images', nargs='*', metavar='IMAGE', help='PNG or JPEG files')
  parser.add_argument('--output-dir', default=RunnerConfig().output_dir,
                      help='the pipeline\'s output dir (default %(default)s)')
  parser.add_argument('--pipeline-name', default=RunnerConfig().pipeline_name,
                      help='(default %(default)s)')
  parser.add_argument('--model-dir', help='a SavedModel folder; default: the latest pushed')
  parser.add_argument('--top-k', type=int, default=5, help='(default %(default)s)')
  parser.add_argument('--json', action='store_true', help='one JSON object per image')
  parser.add_argument('--request', metavar='PATH',
                      help='a REST predict request body ({"instances": [{"b64": ...}]}; - for '
                      'stdin): print the response a TF Serving / Vertex AI endpoint sends')
  args = parser.parse_args(argv)
  if bool(args.images) == bool(args.request):
    raise UserError('pass image files, or --request PATH')
  if args.top_k < 1:
    raise UserError(f'--top-k {args.top_k}: must be 1 or more')
  model_dir = args.model_dir or latest_pushed_model(
      RunnerConfig(output_dir=args.output_dir, pipeline_name=args.pipeline_name).serving_model_dir)
  if not os.path.isfile(os.path.join(model_dir, 'saved_model.pb')):
    raise UserError(f'{model_dir}: not a SavedModel folder')
  if args.request:
    try:
      if args.request == '-':
        body = json.load(sys.stdin)
      else:
        with open(args.request) as f:
          body = json.load(f)
    except OSError as e:
      raise UserError(f'--request {args.request}: {e.strerror}') from e
    except ValueError as e:
      raise UserError(f'--request {args.request}: not JSON ({e})') from e
    print(json.dumps(rest_predict(model_dir, body)))
    return
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
