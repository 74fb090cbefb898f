"""``python -m course_utils.data {download,verify,cache}`` (see ``course_utils.data.cli``)."""

import sys

from .cli import main

sys.exit(main())
