"""``python -m geosample``."""

from geosample.cli import main

main()
