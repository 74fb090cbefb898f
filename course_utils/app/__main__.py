"""``python -m course_utils.app serve`` (see ``course_utils.app.serve``)."""

import sys

from .serve import main

sys.exit(main())
