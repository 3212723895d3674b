"""The one error type for bad user input (data, flags, files).

Raised anywhere, including inside Beam and TFX executors; the command-line entry points print its
message as one line and exit non-zero (see `pipeline.cli.run_main`).
"""
import errno
import re
from typing import Optional


class UserError(Exception):
  """A problem with the user's input that the user can fix; the message says what and how."""


_MARKER = re.compile(r'UserError: ([^\n]+)')


def user_error_message(exc: BaseException) -> Optional[str]:
  """The UserError message carried by `exc`, even when Beam or TFX wrapped it, else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, UserError):
      return str(exc).split('\n')[0].split(" [while running")[0]
    match = _MARKER.search(str(exc))
    if match:
      return match.group(1).split(" [while running")[0].strip()
    exc = exc.__cause__ or exc.__context__
  return None


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)
# "[Errno 28] No space left on device: '/out/x'" in a message Beam or TFX wrapped, and
# TensorFlow's file errors ("/out/x; No space left on device").
_OS_MARKER = re.compile(r"\[Errno (\d+)\] ([^:\n]+): '([^'\n]+)'")
_TF_MARKER = re.compile(r'(\S+); (No space left on device|Disk quota exceeded|'
                        r'Permission denied|Read-only file system)')


def os_error_message(exc: BaseException) -> Optional[str]:
  """'PATH: No space left on device' for a disk-full or permission error anywhere in `exc`'s
  chain (even wrapped by Beam or TFX), else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
      return f'{exc.filename or "a file"}: {exc.strerror}'
    match = _OS_MARKER.search(str(exc))
    if match and int(match.group(1)) in _DISK_ERRNOS:
      return f'{match.group(3)}: {match.group(2)}'
    match = _TF_MARKER.search(str(exc))
    if match:
      return f'{match.group(1)}: {match.group(2)}'
    exc = exc.__cause__ or exc.__context__
  return None
