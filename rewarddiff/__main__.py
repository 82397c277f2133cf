import sys

from rewarddiff.cli import main

sys.exit(main())
