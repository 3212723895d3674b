"""Tests of modules/export.py's prediction path: test-time augmentation, and the image-bytes
signature that REST clients (TF Serving, Vertex AI Prediction) call."""
import base64
import io
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from base import constants
from base.errors import UserError
from modules import export
from pipeline import predict


def _model():
  """A model that is not mirror-symmetric, so the mirror image gets other logits."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input((4, 4, 3))
  return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))


def test_without_tta_probabilities_are_the_softmax_of_the_logits():
  model, images = _model(), tf.random.uniform([6, 4, 4, 3])
  np.testing.assert_allclose(export.predict_probabilities(model, images, 'none'),
                             tf.nn.softmax(model(images)), atol=1e-6)


def test_flip_tta_averages_the_image_and_its_mirror():
  model, images = _model(), tf.random.uniform([6, 4, 4, 3])
  mirrored = images.numpy()[:, :, ::-1, :]  # NHWC: reverse the width axis
  expected = (tf.nn.softmax(model(images)) + tf.nn.softmax(model(mirrored))) / 2
  probabilities = export.predict_probabilities(model, images, 'flip')
  np.testing.assert_allclose(probabilities, expected, atol=1e-6)
  np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-6)
  # ... and is symmetric: an image and its mirror get the same prediction.
  np.testing.assert_allclose(export.predict_probabilities(model, mirrored, 'flip'), probabilities,
                             atol=1e-6)
  assert not np.allclose(probabilities, export.predict_probabilities(model, images, 'none'))


def test_flip_shift_tta_averages_ten_views():
  model, images = _model(), tf.random.uniform([6, 4, 4, 3])
  pixels = images.numpy()
  padded = np.pad(pixels, [(0, 0), (1, 1), (1, 1), (0, 0)], mode='reflect')
  # The image, then shifted by one pixel: content moves down, up, right, left; then their mirrors.
  views = [pixels] + [padded[:, r:r + 4, c:c + 4] for r, c in ((0, 1), (2, 1), (1, 0), (1, 2))]
  views += [view[:, :, ::-1] for view in views]
  assert np.array_equal(views[1][:, 1:], pixels[:, :-1])  # shifted down: row 0 reflects row 1
  assert np.array_equal(views[1][:, 0], pixels[:, 1])
  expected = np.mean([tf.nn.softmax(model(view)) for view in views], axis=0)
  probabilities = export.predict_probabilities(model, images, 'flip_shift')
  np.testing.assert_allclose(probabilities, expected, atol=1e-6)
  # The views of the mirror image are the mirrors of the views: the same prediction.
  np.testing.assert_allclose(export.predict_probabilities(model, pixels[:, :, ::-1], 'flip_shift'),
                             probabilities, atol=1e-6)
  assert not np.allclose(probabilities, export.predict_probabilities(model, images, 'flip'))


def test_tta_of_an_empty_batch():
  empty = tf.zeros([0, 4, 4, 3])
  assert export.predict_probabilities(_model(), empty, 'flip_shift').shape == (0, 5)


def test_unknown_tta():
  with pytest.raises(ValueError, match="Unknown test-time augmentation 'rotate'; expected one of: "
                     'none, flip, flip_shift'):
    export.predict_probabilities(_model(), tf.zeros([1, 4, 4, 3]), 'rotate')


# --- the image-bytes signature: what a REST client sends ---

def _encoded(pixels: np.ndarray, image_format: str = 'PNG', **options) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, image_format, **options)
  return buffer.getvalue()


def _stored_pixels(encoded: bytes, size: int = 32) -> np.ndarray:
  png = export.encoded_to_stored_png(tf.constant([encoded]), size)[0]
  return tf.io.decode_png(png).numpy().astype(int)


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
  """A photo-like RGB image (noise smoothed by an upscale), for resampling comparisons."""
  noise = np.random.default_rng(seed).integers(0, 256, (height // 4 + 1, width // 4 + 1, 3))
  return np.asarray(Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BICUBIC))


@pytest.mark.parametrize('height,width', [(32, 32), (64, 64), (96, 96), (50, 50), (20, 20),
                                          (40, 70)])
def test_image_bytes_are_resized_as_predict_resizes_files(height, width):
  pixels = _smooth_image(height, width, seed=height * width)
  # pipeline.predict's files: Pillow's bilinear resize (load_as_png); the same to 1 grey level.
  expected = np.asarray(Image.fromarray(pixels).resize(
      (32, 32), Image.Resampling.BILINEAR, reducing_gap=None)).astype(int)
  got = _stored_pixels(_encoded(pixels))
  assert got.shape == (32, 32, 3)
  assert np.abs(got - expected).max() <= 1
  if (height, width) == (32, 32):  # the stored size keeps its pixels exactly
    np.testing.assert_array_equal(got, pixels)


def test_grey_and_jpeg_images_become_rgb():
  grey = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
  np.testing.assert_array_equal(_stored_pixels(_encoded(grey)), np.repeat(grey[..., None], 3, -1))
  pixels = _smooth_image(32, 32, seed=1)
  jpeg = _encoded(pixels, 'JPEG', quality=90)
  # Decoded with the accurate IDCT, as Pillow (pipeline.predict, ExampleGen) decodes it.
  pillow = np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB')).astype(int)
  np.testing.assert_array_equal(_stored_pixels(jpeg), pillow)


@pytest.mark.parametrize('body,message', [
    ({}, 'the request needs "instances": a list of {"b64": "<base64 image>"}'),
    ({'instances': []}, 'the request needs "instances"'),
    ({'instances': ['abc']}, 'instance 0: expected {"b64": "<base64 image>"}'),
    ({'instances': [{'b64': 'aGk='}, {'image_bytes': {'b64': '@@'}}]}, 'instance 1: not base64'),
])
def test_malformed_rest_requests(body, message):
  with pytest.raises(UserError, match=re.escape(message)):
    predict.rest_instances(body)


@pytest.mark.e2e
def test_rest_request_through_the_image_bytes_signature(pipeline_run, tmp_path, capsys):
  """The JSON a REST client sends to TF Serving or Vertex AI Prediction, answered by the pushed
  model: the same predictions as the tf.Example signature (the Evaluator's) for the same images."""
  from tests import e2e  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  records = e2e.serialized_split(config, constants.TEST_SPLIT)[:5]
  pngs = [e2e.feature(tf.train.Example.FromString(r), constants.IMAGE_KEY) for r in records]
  big = _encoded(np.asarray(Image.open(io.BytesIO(pngs[0])).resize((96, 96), Image.NEAREST)))
  jpeg = _encoded(np.asarray(Image.open(io.BytesIO(pngs[1]))), 'JPEG', quality=100)
  request = {'instances': [{'b64': base64.b64encode(b).decode()} for b in pngs]
             + [{'image_bytes': {'b64': base64.b64encode(big).decode()}},
                {'b64': base64.b64encode(jpeg).decode()}]}
  (tmp_path / 'request.json').write_text(json.dumps(request))
  predict.main(['--request', str(tmp_path / 'request.json'), '--output-dir',
                config.runner.output_dir])
  predictions = json.loads(capsys.readouterr().out)['predictions']
  assert len(predictions) == 7

  model_dir = predict.latest_pushed_model(config.runner.serving_model_dir)
  serve = tf.saved_model.load(model_dir).signatures[constants.SERVING_SIGNATURE]
  examples = records + [predict.image_example(predict.load_as_png(str(_write(tmp_path, 'big.png',
                                                                             big)), 32))]
  served = serve(examples=tf.constant(examples))
  expected = served[constants.PROBABILITIES_OUTPUT].numpy()
  got = np.array([p[constants.PROBABILITIES_OUTPUT] for p in predictions])
  np.testing.assert_allclose(got[:5], expected[:5], atol=1e-5)
  names = config.data.class_names
  for p, class_id in zip(predictions, served[constants.CLASS_ID_OUTPUT].numpy()):
    assert p[constants.CLASS_ID_OUTPUT] == class_id
    assert p[constants.CLASS_NAME_OUTPUT] == names[class_id]
  # A bigger picture is resized as pipeline.predict resizes the file (to a grey level): same class.
  assert predictions[5][constants.CLASS_ID_OUTPUT] == served[constants.CLASS_ID_OUTPUT].numpy()[5]
  np.testing.assert_allclose(np.sum(got, axis=1), 1.0, atol=1e-5)
  assert predictions[6][constants.CLASS_NAME_OUTPUT] in names  # JPEG decodes


def _write(folder, name: str, data: bytes):
  (folder / name).write_bytes(data)
  return folder / name
