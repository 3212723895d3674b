"""The one error type for bad user input (data, flags, files).

Raised anywhere, including inside Beam and TFX executors; the command-line entry points print its
message as one line and exit non-zero (see `pipeline.cli.run_main`).
"""
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
