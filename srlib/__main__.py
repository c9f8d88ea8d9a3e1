import sys

from srlib.cli import main

sys.exit(main())
