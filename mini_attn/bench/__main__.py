import sys

from mini_attn.bench import main

sys.exit(main())
