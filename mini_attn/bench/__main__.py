"""``python -m mini_attn.bench``: see :func:`mini_attn.bench.main`."""

import sys

from mini_attn.bench import main

sys.exit(main())
