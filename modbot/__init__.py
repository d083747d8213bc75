"""modbot: answers LinkedIn notifications from students with a counselor's boundaries.

The package is a pipeline of one module per stage (see README.md, "Architecture"). Importing it
has no side effects: no engine, scheduler or network client is created at import time.
"""

__version__ = "0.1.0"
