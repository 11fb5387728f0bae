import sys

from deploy.bench.run import main

sys.exit(main())
