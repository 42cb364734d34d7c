"""idops Splunk SOAR app. The built package carries the connector core in src/vendor/ (copied there by
build_package.py); in development that folder is absent and the repo's own `connectors` is used."""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    # first on the path, so the package's own copy wins over anything else installed
    sys.path.insert(0, _VENDOR)
