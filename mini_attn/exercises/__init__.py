"""Exercise checkers, one module per chapter; every checker is re-exported here.

Each ``check_*`` function runs the learner's function on fixed cases and prints a short
success line, or raises :class:`CheckFailed` with a message that names the failing case,
what was expected and what came back.
"""

from ._core import CheckFailed
from .ch01 import *
from .ch02 import *
from .ch03 import *
from .ch04 import *
from .ch05 import *
from .ch06 import *
from .ch07 import *
from .ch08 import *
from .ch09 import *
from .ch10 import *

from . import ch01
from . import ch02
from . import ch03
from . import ch04
from . import ch05
from . import ch06
from . import ch07
from . import ch08
from . import ch09
from . import ch10

__all__ = [
    "CheckFailed",
    *ch01.__all__,
    *ch02.__all__,
    *ch03.__all__,
    *ch04.__all__,
    *ch05.__all__,
    *ch06.__all__,
    *ch07.__all__,
    *ch08.__all__,
    *ch09.__all__,
    *ch10.__all__,
]
