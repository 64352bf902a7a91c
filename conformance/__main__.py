import sys

from conformance.entry import main

sys.exit(main())
