"""lpsbook: Learnable Parameter Similarity, reproduced and examined.

The package is laid out by layer, each folder importing only from the folders before it:
``core`` < ``training`` < ``methods`` < ``protocols`` < ``findings`` < ``show`` < ``experiments`` < ``cli``.
"""
import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"


@functools.cache
def code_version() -> str:
    """A digest (12 hex digits) of the package's source: results cached by one version are not
    served to another, so a fix in the code is never hidden by an old result."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
