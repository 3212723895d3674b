"""The data edge: locating (and downloading) CIFAR-100, class tables, resolving the config."""
import contextlib
import functools
import http.server
import os
import pickle
import shutil
import threading

import pytest
from PIL import Image

from base import constants
from pipeline import data
from base.configs import DataConfig
from base.errors import UserError
from tests import fixtures


@contextlib.contextmanager
def serve(directory):
  """A local HTTP server for `directory` on 127.0.0.1 (the machine has no internet)."""
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f'http://127.0.0.1:{server.server_address[1]}'
  finally:
    server.shutdown()


def test_resolve_archive_default_twenty_classes(cifar_archive):
  path, _ = cifar_archive
  resolved, sizes = data.resolve_data(DataConfig(data=path, trust_data=True, team_seed=4))
  assert resolved.source == constants.SOURCE_CIFAR_ARCHIVE and len(resolved.class_names) == 20
  assert resolved.fine_label_ids == tuple(sorted(resolved.fine_label_ids))
  assert resolved.class_names == tuple(fixtures.FINE_NAMES[i] for i in resolved.fine_label_ids)
  assert resolved.coarse_names == tuple(
      fixtures.COARSE_NAMES[fixtures.COARSE_OF[n]] for n in resolved.class_names)
  # 8 training images per class: round(0.15 * 8) = 1 held out for eval.
  assert sizes == {'train': 140, 'eval': 20, 'test': 60}


def test_keras_cache_is_found(cifar_archive, tmp_path, monkeypatch):
  path, _ = cifar_archive
  os.makedirs(tmp_path / 'datasets')
  shutil.copy(path, tmp_path / 'datasets' / 'cifar-100-python.tar.gz')
  monkeypatch.setenv('KERAS_HOME', str(tmp_path))
  assert data.locate_source(None) == (constants.SOURCE_CIFAR_ARCHIVE,
                                      str(tmp_path / 'datasets' / 'cifar-100-python.tar.gz'))


def test_keras3_extracted_cache_is_found(cifar_archive, tmp_path, monkeypatch):
  path, _ = cifar_archive
  fixtures.extract_archive(path, str(tmp_path / 'datasets' / 'cifar-100-python-target'))
  monkeypatch.setenv('KERAS_HOME', str(tmp_path))
  assert data.locate_source(None)[0] == constants.SOURCE_CIFAR_FOLDER


def test_download_into_keras_cache(cifar_archive, tmp_path, monkeypatch):
  path, _ = cifar_archive
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'home'))
  with serve(os.path.dirname(path)) as url:
    monkeypatch.setenv('CIFAR100_URL', url + '/cifar-100-python.tar.gz')
    source, located = data.locate_source(None)
  assert source == constants.SOURCE_CIFAR_ARCHIVE
  with open(located, 'rb') as got, open(path, 'rb') as want:
    assert got.read() == want.read()
  assert os.listdir(os.path.dirname(located)) == ['cifar-100-python.tar.gz']  # no .part left


def test_failed_download_says_where_to_put_the_archive(tmp_path, monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path))
  with serve(tmp_path) as url:
    monkeypatch.setenv('CIFAR100_URL', url + '/missing.tar.gz')
    with pytest.raises(UserError) as info:
      data.locate_source(None)
  target = os.path.join(str(tmp_path), 'datasets', 'cifar-100-python.tar.gz')
  assert f'put cifar-100-python.tar.gz at {target} or pass --data PATH' in str(info.value)
  assert not os.path.exists(target) and os.listdir(os.path.dirname(target)) == []


def test_class_table_from_url(cifar_archive, tmp_path):
  path, _ = cifar_archive
  (tmp_path / 'table.csv').write_text('\n'.join(
      ','.join(str((r * 7 + k * 3) % 100) for k in range(20)) for r in range(5)))
  with serve(tmp_path) as url:
    resolved, _ = data.resolve_data(
        DataConfig(data=path, trust_data=True, team_seed=2, class_table=url + '/table.csv'))
  assert resolved.fine_label_ids == tuple(sorted((14 + k * 3) % 100 for k in range(20)))


def test_unreachable_class_table(cifar_archive):
  with pytest.raises(UserError, match='cannot fetch it'):
    data.read_class_table('http://127.0.0.1:9/table.csv')
  with pytest.raises(UserError, match='No such file'):
    data.read_class_table('/nonexistent/table.csv')


def test_image_folder_defaults_to_all_classes_and_holds_out_tail(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog', 'frog'], 10)
  resolved, sizes = data.resolve_data(DataConfig(data=str(tmp_path)))
  assert resolved.source == constants.SOURCE_IMAGE_FOLDER
  assert resolved.class_names == ('cat', 'dog', 'frog') and resolved.fine_label_ids == (0, 1, 2)
  assert resolved.coarse_names == resolved.class_names
  assert sizes == {'train': 21, 'eval': 3, 'test': 6}


@pytest.mark.parametrize('kwargs,message', [
    (dict(data='/nonexistent/cifar.tar.gz'), 'no such file or folder'),
    (dict(classes=('apple', 'appel')), "unknown class 'appel'"),
    (dict(classes=('apple', 'apple')), 'duplicate classes'),
    (dict(eval_fraction=1.5), '--eval-fraction 1.5'),
    (dict(num_classes=101), '--num-classes 101'),
])
def test_resolve_errors(cifar_archive, kwargs, message):
  config = DataConfig(data=cifar_archive[0], trust_data=True)
  with pytest.raises(UserError, match=message):
    data.resolve_data(DataConfig(**{**config.__dict__, **kwargs}))


# --- image folders and CIFAR pickles the preflight refuses or converts (issue 12) ---


def test_a_class_without_test_images_is_an_error(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog', 'emu'], 4, 2)
  shutil.rmtree(tmp_path / 'test' / 'dog')
  with pytest.raises(UserError, match=r"test: no test images for classes \['dog'\]"):
    data.resolve_data(DataConfig(data=str(tmp_path)))
  # Choosing only classes that have test images is fine.
  resolved, sizes = data.resolve_data(DataConfig(data=str(tmp_path), classes=('cat', 'emu')))
  assert resolved.class_names == ('cat', 'emu') and sizes['test'] == 4


def test_a_class_only_in_test_is_an_error(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 4, 2)
  fixtures.write_image_folder(str(tmp_path / 'extra'), ['yak'], 1, 1)
  shutil.move(str(tmp_path / 'extra' / 'test' / 'yak'), str(tmp_path / 'test' / 'yak'))
  with pytest.raises(UserError, match=r"classes \['yak'\] are not in train/"):
    data.resolve_data(DataConfig(data=str(tmp_path)))


def test_non_square_images_are_an_error(tmp_path):
  for name in ('cat', 'dog'):
    os.makedirs(tmp_path / 'train' / name)
    for n in range(3):
      Image.new('RGB', (40, 30)).save(tmp_path / 'train' / name / f'{n}.png')
  with pytest.raises(UserError, match='images are 40x30; the pipeline needs square images'):
    data.resolve_data(DataConfig(data=str(tmp_path)))


def test_conversions_are_said_once_with_counts(tmp_path, capsys):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog', 'emu'], 5)
  for n in range(2):
    Image.new('L', (32, 32), 9).save(tmp_path / 'train' / 'cat' / f'grey{n}.png')
  Image.new('RGBA', (32, 32)).save(tmp_path / 'train' / 'dog' / 'clear.png')
  Image.new('L', (32, 32)).save(tmp_path / 'train' / 'emu' / 'grey.png')  # emu: not chosen
  data.resolve_data(DataConfig(data=str(tmp_path), classes=('cat', 'dog')))
  notes = [line for line in capsys.readouterr().out.splitlines() if 'RGB' in line]
  assert notes == ['Note: converting 3 of 13 images to 8-bit RGB: 1 with transparency '
                   '(composited onto white), 2 grey']


def test_inconsistent_superclass_labels_are_an_error(tmp_path):
  splits = fixtures.cifar100_splits(2, 1)
  train = dict(splits['train'][0])
  coarse = list(train[b'coarse_labels'])
  first_apple = list(train[b'fine_labels']).index(0)
  coarse[first_apple] = (coarse[first_apple] + 1) % 20  # one apple in another superclass
  train[b'coarse_labels'] = coarse
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()
  meta = {b'fine_label_names': [n.encode() for n in fixtures.FINE_NAMES],
          b'coarse_label_names': [n.encode() for n in fixtures.COARSE_NAMES]}
  for name, obj in (('meta', meta), ('train', train), ('test', splits['test'][0])):
    (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
  with pytest.raises(UserError, match="class 'apple': inconsistent superclass labels"):
    data.resolve_data(DataConfig(data=str(folder), classes=('apple', 'bee')))
  resolved, _ = data.resolve_data(DataConfig(data=str(folder), classes=('bee', 'bus')))
  assert resolved.class_names == ('bee', 'bus')
