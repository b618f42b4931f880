# SPDX-License-Identifier: Apache-2.0
from otel_kubeskoop.cli import main

main()
